// A unit whose changes net out (no events of its own) after its first change was
// recovered elsewhere: the change it committed since (back to the first value) must keep a record.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller, Param, ParseIntPipe, Patch, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const gate: { open?: () => void; opened: Promise<void> } = { opened: Promise.resolve() };
const closeGate = (): void => {
  gate.opened = new Promise<void>((resolve) => (gate.open = resolve));
};

@Controller('netted-paused')
@UseGuards(TokenGuard)
class NettedController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** No @Audited: the changes are the unit's only record. 1 -> 77, pause, 77 -> 1. */
  @Patch('orders/:id')
  async twoStep(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.dataSource.getRepository(Order).update(id, { total: 77 });
    await gate.opened;
    await this.dataSource.getRepository(Order).update(id, { total: 1 });
    return { id };
  }
}

async function sharedDatabase(kind: TestDatabase['kind']): Promise<TestDatabase> {
  if (kind !== 'sqlite') return createTestDatabase(kind);
  const dir = mkdtempSync(join(tmpdir(), 'audit-netted-'));
  return { kind, options: { type: 'better-sqlite3', database: join(dir, 'audit.db') }, drop: async () => rmSync(dir, { recursive: true, force: true }) };
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(databases())('a netted-out unit recovered while paused, on %s', (kind) => {
  let db: TestDatabase;
  let rescuer: TestApp;
  let paused: TestApp | undefined;
  beforeAll(async () => {
    db = await sharedDatabase(kind);
    rescuer = await createTestApp({ db, adapter: 'express', audit: { recoverAfter: 1_000, shutdownTimeout: 500 } });
  });
  afterEach(async () => {
    gate.open?.();
    await paused?.close().catch(() => undefined);
    paused = undefined;
  });
  afterAll(async () => {
    await rescuer?.close().catch(() => undefined);
    await db?.drop();
  });

  it('records the change back to 1 committed after the recovery (fail-closed)', async () => {
    paused = await createTestApp({ db, adapter: 'express', controllers: [NettedController], audit: { recoverAfter: 60_000, shutdownTimeout: 500 } });
    const app = paused;
    const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    closeGate();
    const answer = app.request(`/netted-paused/orders/${order.id}`, { method: 'PATCH', headers: { authorization: 'Bearer alice-token' } });
    const journal = app.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    expect(await journal.count()).toBe(1);

    const id = app.app.get(JournalRecovery).instanceId;
    await app.dataSource.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
    await rescuer.app.get(JournalRecovery).runPass();
    expect(await journal.count()).toBe(0);

    gate.open!();
    const status = (await answer).status;
    expect((await app.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).total).toBe(1);
    await sleep(5_500);
    await app.app.get(JournalRecovery).runPass();
    await rescuer.app.get(JournalRecovery).runPass();
    const changes = (await app.rows()).filter((row) => row.targetId === String(order.id) || JSON.stringify(row.changes ?? []).includes('"total"')).map((row) => row.changes);
    // The audit trail must not end at total = 77 while the database says 1.
    expect({ status, changes: JSON.stringify(changes) }).toMatchObject({ changes: expect.stringMatching(/"from":77,"to":1|"to":1[,}]/) });
  });
});
