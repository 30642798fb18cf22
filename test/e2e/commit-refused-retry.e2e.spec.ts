import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** A point both requests reach before either goes on (bounded: 5 s). */
class Meeting {
  private arrived = 0;
  private open!: () => void;
  private readonly opened = new Promise<void>((resolve) => (this.open = resolve));
  async meet(): Promise<void> {
    if (++this.arrived === 2) this.open();
    await Promise.race([this.opened, new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
}

interface Round {
  read: Meeting;
  wrote: Meeting;
  firstCommitted: Promise<void>;
  markFirstCommitted: () => void;
}
const newRound = (): Round => {
  let markFirstCommitted!: () => void;
  const firstCommitted = new Promise<void>((resolve) => (markFirstCommitted = resolve));
  return { read: new Meeting(), wrote: new Meeting(), firstCommitted, markFirstCommitted };
};

/**
 * A ledger whose next entry's total is one more than the sum of the entries so far, written
 * under SERIALIZABLE with the usual retry loop. Two writers that read the same sum conflict:
 * the one committing second is refused at its COMMIT (40001) and tries again.
 */
@Controller('ledger')
@UseGuards(TokenGuard)
class LedgerController {
  round = newRound();
  readonly failures: string[] = [];

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('ledger.appended')
  async append(@Body() body: { note: string; second?: boolean }): Promise<{ attempts: number }> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const runner = this.dataSource.createQueryRunner();
      await runner.connect();
      try {
        await runner.startTransaction('SERIALIZABLE');
        const entries = await runner.manager.find(Order, { where: { status: 'ledger' } });
        const sum = entries.reduce((total, entry) => total + entry.total, 0);
        if (attempt === 1) await this.round.read.meet();
        await runner.manager.save(Order, runner.manager.create(Order, { status: 'ledger', note: `${body.note}-${attempt}`, total: sum + 1 }));
        if (attempt === 1) {
          await this.round.wrote.meet();
          if (body.second) await this.round.firstCommitted;
        }
        await runner.commitTransaction();
        if (!body.second) this.round.markFirstCommitted();
        return { attempts: attempt };
      } catch (error) {
        this.failures.push(`${body.note} attempt ${attempt}: ${(error as { code?: string }).code} ${(error as Error).message}`);
        if (runner.isTransactionActive) await runner.rollbackTransaction();
        if ((error as { code?: string }).code !== '40001') throw error;
      } finally {
        await runner.release();
      }
    }
    throw new Error('gave up');
  }

  /** The same, with `dataSource.transaction('SERIALIZABLE', …)` in the retry loop. */
  @Post('managed')
  @Audited('ledger.appended')
  async appendManaged(@Body() body: { note: string; second?: boolean }): Promise<{ attempts: number }> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      try {
        await this.dataSource.transaction('SERIALIZABLE', async (manager) => {
          const entries = await manager.find(Order, { where: { status: 'ledger' } });
          const sum = entries.reduce((total, entry) => total + entry.total, 0);
          if (attempt === 1) await this.round.read.meet();
          await manager.save(Order, manager.create(Order, { status: 'ledger', note: `${body.note}-${attempt}`, total: sum + 1 }));
          if (attempt === 1) {
            await this.round.wrote.meet();
            if (body.second) await this.round.firstCommitted;
          }
        });
        if (!body.second) this.round.markFirstCommitted();
        return { attempts: attempt };
      } catch (error) {
        this.failures.push(`${body.note} attempt ${attempt}: ${(error as { code?: string }).code} ${(error as Error).message}`);
        if ((error as { code?: string }).code !== '40001') throw error;
      }
    }
    throw new Error('gave up');
  }
}

// SQLite has one connection (no concurrent transactions); MariaDB refuses a conflicting
// SERIALIZABLE writer at its INSERT (a deadlock), not at its COMMIT.
describe.each(databases().filter((kind) => kind === 'postgres'))('a SERIALIZABLE retry loop whose first COMMIT is refused on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [LedgerController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it.each(['', '/managed'])('the request answered 201 after its retry committed (route /ledger%s): a success intent claiming the retried insert only', async (route) => {
    const controller = t.app.get(LedgerController);
    await t.seed(() => t.dataSource.getRepository(Order).delete({ status: 'ledger' }));
    controller.round = newRound();
    controller.failures.length = 0;
    const [first, second] = await Promise.all([
      t.request(`/ledger${route}`, { method: 'POST', json: { note: 'alice' }, headers: { authorization: 'Bearer alice-token', 'x-request-id': 'ledger-alice' } }),
      t.request(`/ledger${route}`, { method: 'POST', json: { note: 'bob', second: true }, headers: { authorization: 'Bearer bob-token', 'x-request-id': 'ledger-bob' } }),
    ]);
    expect([first.status, await first.json()]).toEqual([201, { attempts: 1 }]);
    expect([second.status, await second.json()]).toEqual([201, { attempts: 2 }]);
    // The second writer's first attempt was refused at its COMMIT.
    expect(controller.failures).toEqual([expect.stringMatching(/^bob attempt 1: 40001 could not serialize access/)]);

    const entries = await t.dataSource.getRepository(Order).find({ where: { status: 'ledger' }, order: { id: 'ASC' } });
    expect(entries.map((entry) => [entry.note, entry.total])).toEqual([
      ['alice-1', 1],
      ['bob-2', 2],
    ]);

    const rows = await t.rows();
    expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
    const bob = rows.filter((row) => row.requestId === 'ledger-bob');
    expect(bob.map((row) => [row.action, row.kind, row.outcome, row.error])).toEqual([['ledger.appended', 'intent', 'success', null]]);
    expect(bob[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(entries[1]!.id), operation: 'insert' })]);
    const alice = rows.filter((row) => row.requestId === 'ledger-alice');
    expect(alice.map((row) => [row.action, row.kind, row.outcome, row.error])).toEqual([['ledger.appended', 'intent', 'success', null]]);
  });
});
