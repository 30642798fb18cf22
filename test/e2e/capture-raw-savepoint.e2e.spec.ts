import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Controller('raw-savepoint')
@UseGuards(TokenGuard)
class RawSavepointController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Saves a kept order, then a second one inside a savepoint it rolls back by hand, then commits. */
  @Post()
  @Audited('orders.drafted')
  async draft(@Body() body: { note: string }): Promise<{ kept: number }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      const kept = await runner.manager.save(Order, runner.manager.create(Order, { status: 'kept', note: `${body.note}-kept` }));
      await runner.query('SAVEPOINT draft');
      await runner.manager.save(Order, runner.manager.create(Order, { status: 'draft', note: `${body.note}-draft` }));
      await runner.query('ROLLBACK TO SAVEPOINT draft');
      await runner.commitTransaction();
      return { kept: kept.id };
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      throw error;
    } finally {
      await runner.release();
    }
  }
}

/**
 * Runs steps on one query runner: `start`, `commit`, `rollback` (TypeORM's transaction
 * methods), `save:<note>`, `sql:<statement>`, and `try:<statement>` (its failure ignored).
 */
@Controller('raw-savepoint-steps')
@UseGuards(TokenGuard)
class RawSavepointStepsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('orders.stepped')
  async run(@Body() body: { steps: string[] }): Promise<{ failed: number }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    let failed = 0;
    try {
      for (const step of body.steps) {
        const [kind, ...rest] = step.split(':');
        const argument = rest.join(':');
        if (kind === 'start') await runner.startTransaction();
        else if (kind === 'commit') await runner.commitTransaction();
        else if (kind === 'rollback') await runner.rollbackTransaction();
        else if (kind === 'save') await runner.manager.save(Order, runner.manager.create(Order, { status: 'step', note: argument }));
        else if (kind === 'sql') await runner.query(argument);
        else if (kind === 'try') await runner.query(argument).catch(() => failed++);
      }
      return { failed };
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      throw error;
    } finally {
      await runner.release();
    }
  }
}

describe.each(databases())('a savepoint rolled back with raw SQL on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [RawSavepointController, RawSavepointStepsController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('the change rolled back to the savepoint is in no event; the kept one is claimed', async () => {
    const response = await t.request('/raw-savepoint', { method: 'POST', json: { note: 'sp' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const { kept } = (await response.json()) as { kept: number };
    const orders = await t.dataSource.getRepository(Order).find({ where: {}, order: { id: 'ASC' } });
    expect(orders.map((order) => order.note)).toEqual(['sp-kept']);

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['orders.drafted', 'intent', 'success']]);
    expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(kept), operation: 'insert' })]);
    expect(JSON.stringify(rows)).not.toContain('sp-draft');
  });

  /** Runs `steps`; returns the notes of the orders stored and those of the inserts the intent claims. */
  const run = async (steps: string[]): Promise<{ stored: string[]; claimed: string[]; failed: number }> => {
    const response = await t.request('/raw-savepoint-steps', { method: 'POST', json: { steps }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const { failed } = (await response.json()) as { failed: number };
    const orders = await t.dataSource.getRepository(Order).find({ where: {}, order: { id: 'ASC' } });
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['orders.stepped', 'intent', 'success']]);
    const claimed = (rows[0]!.changes as Array<{ operation: string; fields: { note?: { to?: string } } }>).map((change) => `${change.operation}:${change.fields.note?.to}`);
    return { stored: orders.map((order) => order.note!), claimed: claimed.sort(), failed };
  };
  const inserted = (notes: string[]): string[] => notes.map((note) => `insert:${note}`).sort();
  const quote = (name: string): string => (kind === 'mariadb' ? `\`${name}\`` : `"${name}"`);

  beforeEach(async () => {
    await t.dataSource.getRepository(Order).clear();
    await t.clearAudit();
  });

  it('names are compared as the database does: unquoted in any case, quoted', async () => {
    const { stored, claimed } = await run([
      'start',
      'save:kept',
      'sql:savepoint Draft',
      'save:a',
      kind === 'sqlite' ? 'sql:  ROLLBACK TO DRAFT;' : 'sql:  ROLLBACK  WORK TO DRAFT;',
      `sql:SAVEPOINT ${quote('Quoted')}`,
      'save:b',
      `sql:rollback to savepoint ${quote('Quoted')}`,
      'commit',
    ]);
    expect(stored).toEqual(['kept']);
    expect(claimed).toEqual(inserted(stored));
  });

  it('nested savepoints: a release hands the changes to the savepoint around it, a rollback to it drops them', async () => {
    const { stored, claimed } = await run([
      'start',
      'save:kept',
      'sql:SAVEPOINT a',
      'save:a1',
      'sql:SAVEPOINT b',
      'save:b1',
      'sql:RELEASE SAVEPOINT b',
      'save:a2',
      'sql:ROLLBACK TO SAVEPOINT a',
      'save:after',
      'sql:SAVEPOINT c',
      'save:c1',
      'sql:SAVEPOINT d',
      'save:d1',
      'sql:ROLLBACK TO SAVEPOINT d',
      'sql:RELEASE SAVEPOINT c',
      'commit',
    ]);
    expect(stored).toEqual(['kept', 'after', 'c1']);
    expect(claimed).toEqual(inserted(stored));
  });

  it('a ROLLBACK TO a savepoint the database does not know changes nothing', async () => {
    const { stored, claimed, failed } = await run([
      'start',
      'save:kept',
      'sql:SAVEPOINT a',
      'save:a1',
      // On PostgreSQL the failed statement aborts the transaction: a savepoint set before it is rolled back to.
      'sql:SAVEPOINT guard',
      'try:ROLLBACK TO SAVEPOINT nowhere',
      'sql:ROLLBACK TO SAVEPOINT guard',
      'commit',
    ]);
    expect(failed).toBe(1);
    expect(stored).toEqual(['kept', 'a1']);
    expect(claimed).toEqual(inserted(stored));
  });

  it('a savepoint set again under the same name: MariaDB replaces the first, PostgreSQL and SQLite keep it under the new one', async () => {
    const { stored, claimed, failed } = await run([
      'start',
      'save:kept',
      'sql:SAVEPOINT a',
      'save:a1',
      'sql:SAVEPOINT a',
      'save:a2',
      'sql:ROLLBACK TO SAVEPOINT a',
      'sql:RELEASE SAVEPOINT a',
      'try:ROLLBACK TO SAVEPOINT a',
      'commit',
    ]);
    expect(failed).toBe(kind === 'mariadb' ? 1 : 0);
    expect(stored).toEqual(kind === 'mariadb' ? ['kept', 'a1'] : ['kept']);
    expect(claimed).toEqual(inserted(stored));
  });

  it('raw savepoints inside a nested transaction of TypeORM end with it', async () => {
    const { stored, claimed } = await run([
      'start',
      'save:kept',
      'start',
      'save:n1',
      'sql:SAVEPOINT a',
      'save:n2',
      'rollback',
      'start',
      'save:m1',
      'sql:SAVEPOINT a',
      'save:m2',
      'commit',
      'sql:SAVEPOINT open',
      'save:open',
      'commit',
    ]);
    expect(stored).toEqual(['kept', 'm1', 'm2', 'open']);
    expect(claimed).toEqual(inserted(stored));
  });
});
