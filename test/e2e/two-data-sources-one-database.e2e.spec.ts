// Two data sources pointed at one database (a PostgreSQL schema, a MariaDB database, a
// SQLite file) share its audit_journal table: a marker of a journal row (in the audit data
// source's journal) must not be taken for the row itself.
import { linkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Controller, Param, ParseIntPipe, Patch, Post, type Type } from '@nestjs/common';
import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, type Repository } from 'typeorm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Audited, AuditInstanceEntity, AuditJournalEntity, AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { Order } from '../app/order.entity.js';
import { closeGate, gate, sharedDatabase, sleep, withoutTimerPasses } from '../support/paused-instances.js';
import { databases, type TestDatabase } from '../support/test-database.js';
import { polled } from '../support/within.js';
import { twoDataSourceInstance, type TwoDataSourceInstance } from '../support/two-data-source-instances.js';

/** Resolves once a gated handler has committed its change and waits for the gate (armed by `closeGateHere()`). */
let gateReached: Promise<void> = Promise.resolve();
let reachGate: () => void = () => undefined;

/** Closes the gate, and arms `gateReached` for the next handler that gets there. */
function closeGateHere(): void {
  closeGate();
  gateReached = new Promise((resolve) => (reachGate = resolve));
}

/** For the gated handlers: says they are at the gate, then waits for it. */
async function atGate(): Promise<void> {
  reachGate();
  await gate.opened;
}

/** Waits until `journal` is empty: what the test saved before is stored (in the background) and its rows are deleted. */
async function emptied(journal: Repository<AuditJournalEntity>): Promise<void> {
  expect(await polled(() => journal.count(), (count) => count === 0, 20_000), 'the journal emptied').toBe(0);
}

@Controller('shop')
class ShopController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Patch(':id/audited')
  @Audited('order.noted')
  async audited(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update({ id }, { note: 'x' });
    return { id };
  }

  /** Twelve orders in one transaction: past a memory bound of ten changes (two per event), they are kept in the journal only. */
  @Post('batch')
  @Audited('order.batch')
  async batch(): Promise<{ count: number }> {
    await this.orders.manager.transaction(async (manager) => {
      for (let i = 0; i < 12; i++) await manager.getRepository(Order).save({ status: 'batch', total: i });
    });
    return { count: 12 };
  }

  /** Commits a change (its journal row is written in the main data source), then waits for the gate. */
  @Patch(':id/gated')
  @Audited('order.gated')
  async gated(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update({ id }, { status: 'gated' });
    await atGate();
    return { id };
  }
}

/** An app entity of the audit data source: its changes are journaled in the audit data source's journal. */
@Entity('shop_note')
class Note {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 40 })
  text!: string;
}

@Controller('notes')
class NoteController {
  constructor(@InjectRepository(Note, 'audit') private readonly notes: Repository<Note>) {}

  /** Commits a change of a note (its journal row is written in the audit data source), then waits for the gate. */
  @Patch(':id/gated')
  @Audited('note.gated')
  async gated(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.notes.update({ id }, { text: 'gated' });
    await atGate();
    return { id };
  }

  /** Twelve notes in one transaction (past a memory bound of ten changes: kept in the journal only), then waits for the gate. */
  @Post('batch/gated')
  @Audited('note.batch')
  async batch(): Promise<{ count: number }> {
    await this.notes.manager.transaction(async (manager) => {
      for (let i = 0; i < 12; i++) await manager.getRepository(Note).save({ text: `n${i}` });
    });
    await atGate();
    return { count: 12 };
  }
}

/**
 * `rescuer` takes `paused` for dead and recovers its units through the main data source
 * only (as when its pass read the audit data source's journal before their rows were
 * there): for it the rows of the one journal table are that data source's, so it stores
 * their events with the rows' markers, then deletes the rows in the main data source's
 * transaction — whose COMMIT fails: the rows are back, beside their markers.
 */
async function recoveredThroughMain(paused: TwoDataSourceInstance, rescuer: TwoDataSourceInstance): Promise<void> {
  // The test runs the rescuer's passes (see rescuerInstance()): none of its timer's would clear the rows and markers this leaves before the test looks.
  const recovery = rescuer.app.get(JournalRecovery) as unknown as { unitsOf: (dataSource: DataSource, ...rest: unknown[]) => Promise<string[]> };
  const unitsOf = recovery.unitsOf.bind(recovery);
  vi.spyOn(recovery, 'unitsOf').mockImplementation(async (dataSource, ...rest) => (dataSource === rescuer.audit ? [] : unitsOf(dataSource, ...rest)));
  // Only the instance taken for dead (its lease 10 minutes old) is recovered in this pass: not the
  // marker the pass itself leaves, however long a busy machine takes between writing and scanning it.
  const cutoff = vi.spyOn(recovery as unknown as { cutoff: () => Date }, 'cutoff').mockImplementation(() => new Date(Date.now() - 60_000));
  const mainTransaction = rescuer.main.transaction.bind(rescuer.main) as (...args: unknown[]) => Promise<unknown>;
  vi.spyOn(rescuer.main, 'transaction').mockImplementation((async (...args: unknown[]) => {
    const work = args[args.length - 1] as (manager: unknown) => Promise<unknown>;
    return mainTransaction(...args.slice(0, -1), async (manager: unknown) => {
      await work(manager);
      throw new Error('injected commit failure');
    });
  }) as never);
  try {
    await takenForDead(paused, rescuer);
    await rescuer.app
      .get(JournalRecovery)
      .runPass()
      .catch(() => undefined);
  } finally {
    vi.mocked(recovery.unitsOf).mockRestore();
    cutoff.mockRestore();
    vi.mocked(rescuer.main.transaction).mockRestore();
  }
}

/** Statements making `audit_log` refuse `success` rows of request `requestId` (and undoing that), on PostgreSQL and MariaDB. */
function refuseSuccessOf(db: TestDatabase, requestId: string): { on: string[]; off: string[] } {
  if (db.kind === 'mariadb') {
    return {
      on: [
        `CREATE TRIGGER refuse_success BEFORE INSERT ON audit_log FOR EACH ROW BEGIN IF NEW.outcome = 'success' AND NEW.request_id = '${requestId}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected refusal'; END IF; END`,
      ],
      off: ['DROP TRIGGER IF EXISTS refuse_success'],
    };
  }
  const schema = (db.options as { schema: string }).schema;
  return {
    on: [
      `CREATE OR REPLACE FUNCTION "${schema}".refuse_success() RETURNS trigger AS $$ BEGIN IF NEW.outcome = 'success' AND NEW.request_id = '${requestId}' THEN RAISE EXCEPTION 'injected refusal'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`,
      `CREATE TRIGGER refuse_success BEFORE INSERT ON "${schema}".audit_log FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse_success()`,
    ],
    off: [`DROP TRIGGER IF EXISTS refuse_success ON "${schema}".audit_log`],
  };
}

/** Starts the gated PATCH of a fresh order on `paused`: its change is committed and journaled (one row), its handler waits for the gate. */
async function gatedUnit(paused: TwoDataSourceInstance, requestId: string): Promise<{ answer: Promise<Response>; journal: Repository<AuditJournalEntity> }> {
  const order = await paused.main.getRepository(Order).save({ status: 'new', total: 1 });
  const journal = paused.main.getRepository(AuditJournalEntity);
  await emptied(journal);
  closeGateHere();
  const answer = fetch(`${paused.url}/shop/${order.id}/gated`, { method: 'PATCH', headers: { 'x-request-id': requestId } });
  await gateReached;
  expect(await journal.count()).toBe(1);
  return { answer, journal };
}

/** Holds the next `transaction()` of `dataSource` before it starts: `reached` once asked for, until `release()`. */
function holdNextTransaction(dataSource: DataSource): { reached: Promise<void>; release: () => void } {
  const transaction = dataSource.transaction.bind(dataSource) as (...args: unknown[]) => Promise<unknown>;
  let reach!: () => void;
  const reached = new Promise<void>((resolve) => (reach = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  vi.spyOn(dataSource, 'transaction').mockImplementationOnce((async (...args: unknown[]) => {
    reach();
    await released;
    return transaction(...args);
  }) as never);
  return { reached, release };
}

/** Ages `paused`'s lease so that `rescuer` takes it for dead; it renews it no more (as a paused process does not). */
async function takenForDead(paused: TwoDataSourceInstance, rescuer: TwoDataSourceInstance): Promise<void> {
  const recovery = paused.app.get(JournalRecovery);
  vi.spyOn(recovery as unknown as { lease: () => Promise<void> }, 'lease').mockResolvedValue(undefined);
  const id = recovery.instanceId;
  await rescuer.audit.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
}

/**
 * The instance that recovers (recoverAfter 1 s), started before the instance it is to take
 * for dead, and without timer passes (see withoutTimerPasses()): the test runs its passes.
 */
async function rescuerInstance(db: TestDatabase, options: AuditModuleOptions, controllers: Type[], auditEntities: Type[] = []): Promise<TwoDataSourceInstance> {
  const rescuer = await twoDataSourceInstance(db, db, { recoverAfter: 1_000, ...options }, controllers, auditEntities);
  withoutTimerPasses(rescuer.app);
  return rescuer;
}

describe.each(databases())('two data sources on one database (one journal table), on %s', (kind) => {
  it('a PATCH changing the main data source is recorded once', async () => {
    const db = await sharedDatabase(kind);
    const app = await twoDataSourceInstance(db, db, { recoverAfter: 2_000 }, [ShopController]);
    try {
      const order = await app.main.getRepository(Order).save({ status: 'new', total: 1 });
      // The save's record is stored (in the background) before audit_log is emptied.
      await emptied(app.main.getRepository(AuditJournalEntity));
      await app.audit.getRepository(AuditLogEntity).clear();
      const response = await fetch(`${app.url}/shop/${order.id}/audited`, { method: 'PATCH' });
      await sleep(300);
      await app.app.get(JournalRecovery).runPass();
      const rows = await app.audit.getRepository(AuditLogEntity).find();
      expect(response.status).toBe(200);
      expect(rows.map((row) => row.action)).toEqual(['order.noted']);
    } finally {
      await app.app.close();
      await db.drop();
    }
  }, 60_000);
});

describe.each(databases())('two data sources on one database, a unit stored whose journal rows were not deleted, on %s', (kind) => {
  afterEach(() => vi.restoreAllMocks());

  /**
   * The main data source's journal rows cannot be deleted after their unit's events are
   * stored (as a crash right after the insert leaves them): on SQLite the writer's DELETE
   * of them fails (a trigger), on PostgreSQL the main data source's COMMIT (a deferred
   * trigger), on MariaDB its transactions roll back after their work. Turned off through
   * a connection of its own (the instance may be closed by then).
   */
  async function keepJournalRows(app: TwoDataSourceInstance, db: TestDatabase, on: boolean): Promise<void> {
    const schema = (db.options as { schema?: string }).schema;
    const sql =
      kind === 'sqlite'
        ? on
          ? [`CREATE TRIGGER keep_journal_rows BEFORE DELETE ON audit_journal WHEN OLD.entry NOT LIKE '%"stored":true%' BEGIN SELECT RAISE(ABORT, 'injected delete failure'); END`]
          : ['DROP TRIGGER IF EXISTS keep_journal_rows']
        : kind === 'postgres'
          ? on
            ? [
                `CREATE OR REPLACE FUNCTION "${schema}".fail_commit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected commit failure'; END $$ LANGUAGE plpgsql`,
                `CREATE CONSTRAINT TRIGGER fail_commit AFTER DELETE ON "${schema}".audit_journal DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "${schema}".fail_commit()`,
              ]
            : [`DROP TRIGGER IF EXISTS fail_commit ON "${schema}".audit_journal`]
          : [];
    if (sql.length) {
      const connection = await new DataSource(db.options).initialize();
      try {
        for (const statement of sql) await connection.query(statement);
      } finally {
        await connection.destroy();
      }
    }
    if (kind !== 'mariadb') return;
    if (on) {
      const original = app.main.transaction.bind(app.main) as (...args: unknown[]) => Promise<unknown>;
      vi.spyOn(app.main, 'transaction').mockImplementation((async (...args: unknown[]) => {
        const work = args[args.length - 1] as (m: unknown) => Promise<unknown>;
        return original(...args.slice(0, -1), async (manager: unknown) => {
          await work(manager);
          throw new Error('injected commit failure');
        });
      }) as never);
    } else vi.mocked(app.main.transaction).mockRestore?.();
  }

  /** What the one journal table holds: the unit's rows and the markers of its stored events. */
  const journalOf = async (app: TwoDataSourceInstance) => {
    const rows = await app.main.getRepository(AuditJournalEntity).find();
    return { rows: rows.filter((row) => !row.entry.stored).length, markers: rows.filter((row) => row.entry.stored).length };
  };

  it('the instance that stored it dies: recovery stores nothing more, empties the journal and removes its lease', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `rows-left-${kind}`;
    const paused = await twoDataSourceInstance(db, db, { recoverAfter: 60_000 }, [ShopController]);
    let rescuer: TwoDataSourceInstance | undefined;
    try {
      const order = await paused.main.getRepository(Order).save({ status: 'new', total: 1 });
      const journal = paused.main.getRepository(AuditJournalEntity);
      await emptied(journal);
      const id = paused.app.get(JournalRecovery).instanceId;
      await keepJournalRows(paused, db, true);
      await fetch(`${paused.url}/shop/${order.id}/audited`, { method: 'PATCH', headers: { 'x-request-id': requestId } });
      // The unit's events are stored, with the marker(s) saying so; its journal row stays.
      const records = async (app: TwoDataSourceInstance) => (await app.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => row.action);
      expect({ records: await records(paused), journal: await journalOf(paused) }).toEqual({ records: ['order.noted'], journal: { rows: 1, markers: 1 } });
      // It dies (its shutdown cannot delete the row either: its lease stays).
      await paused.app.close();
      await keepJournalRows(paused, db, false);

      rescuer = await twoDataSourceInstance(db, db, { recoverAfter: 1_000 }, [ShopController]);
      await rescuer.audit.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
      for (let pass = 0; pass < 3; pass++) await rescuer.app.get(JournalRecovery).runPass();
      const lease = await rescuer.audit.getRepository(AuditInstanceEntity).countBy({ id });
      expect({ records: await records(rescuer), journal: await journalOf(rescuer), lease }).toEqual({ records: ['order.noted'], journal: { rows: 0, markers: 0 }, lease: 0 });
    } finally {
      await keepJournalRows(paused, db, false).catch(() => undefined);
      await paused.app.close().catch(() => undefined);
      await rescuer?.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);

  // On SQLite the writer deletes the marker with the unit's rows (one statement): see the test above.
  it.skipIf(kind === 'sqlite')('the markers alone are left (their DELETE failed): recovery removes them and stores nothing more', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `markers-left-${kind}`;
    const app = await twoDataSourceInstance(db, db, { recoverAfter: 60_000 }, [ShopController]);
    let rescuer: TwoDataSourceInstance | undefined;
    try {
      const order = await app.main.getRepository(Order).save({ status: 'new', total: 1 });
      const journal = app.main.getRepository(AuditJournalEntity);
      await emptied(journal);
      // The DELETE of the markers, after the commits, fails (a connection reset).
      const recovery = app.app.get(JournalRecovery) as unknown as { deleteMarkers: (...args: unknown[]) => Promise<void> };
      vi.spyOn(recovery, 'deleteMarkers').mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
      const response = await fetch(`${app.url}/shop/${order.id}/audited`, { method: 'PATCH', headers: { 'x-request-id': requestId } });
      vi.mocked(recovery.deleteMarkers).mockRestore();
      const records = async (from: TwoDataSourceInstance) => (await from.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => row.action);
      expect({ status: response.status, records: await records(app), journal: await journalOf(app) }).toEqual({ status: 200, records: ['order.noted'], journal: { rows: 0, markers: 1 } });

      rescuer = await twoDataSourceInstance(db, db, { recoverAfter: 1_000 }, [ShopController]);
      await sleep(1_100);
      for (let pass = 0; pass < 2; pass++) await rescuer.app.get(JournalRecovery).runPass();
      expect({ records: await records(rescuer), journal: await journalOf(rescuer) }).toEqual({ records: ['order.noted'], journal: { rows: 0, markers: 0 } });
    } finally {
      await app.app.close().catch(() => undefined);
      await rescuer?.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);
});

describe.each(databases().filter((kind) => kind !== 'sqlite'))('two data sources on one database, a recovery racing the unit storing its rows, on %s', (kind) => {
  afterEach(() => vi.restoreAllMocks());

  /** Whether a DELETE of the journal waits for a row lock (in this test's schema or database). */
  const deleteIsWaiting = async (app: TwoDataSourceInstance, db: TestDatabase): Promise<boolean> => {
    const journal = app.audit.getMetadata(AuditJournalEntity).tableName;
    if (kind === 'postgres') {
      const schema = (db.options as { schema: string }).schema;
      const [row] = await app.audit.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [
        `DELETE FROM "${schema}"."${journal}"%`,
      ]);
      return Number(row.n) > 0;
    }
    const database = (db.options as { database: string }).database;
    // A DELETE still running after 200 ms waits for a row's lock (its multi-table form names the table after USING).
    const [row] = await app.audit.query(
      `SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND (INFO LIKE ? OR INFO LIKE ?) AND TIME_MS > 200`,
      [database, `DELETE FROM \`${journal}\`%`, `DELETE FROM j USING \`${journal}\`%`],
    );
    return Number(row.n) > 0;
  };

  /**
   * The unit's store: its main data source's transaction deletes its journal row (and holds
   * the row's lock) while the audit data source's transaction stores its events and the
   * row's marker; that commits, then the main data source's COMMIT fails, so the row comes
   * back. Another instance, which took the unit's instance for dead, read the row before
   * the marker was there and waited on the lock to delete it: finding the marker then, it
   * stores nothing, and the unit's record is the one it stored itself.
   */
  it('a recovery that read the row before the marker, the main COMMIT of the unit failing: one record, an empty journal', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `store-race-${kind}`;
    const rescuer = await rescuerInstance(db, {}, [ShopController]);
    const paused = await twoDataSourceInstance(db, db, { recoverAfter: 60_000 }, [ShopController]);
    try {
      const { answer, journal } = await gatedUnit(paused, requestId);

      // The unit's main data source's transaction fails at its COMMIT (after its work: the row's DELETE, the audit transaction).
      const mainTransaction = paused.main.transaction.bind(paused.main) as (...args: unknown[]) => Promise<unknown>;
      vi.spyOn(paused.main, 'transaction').mockImplementation((async (...args: unknown[]) => {
        const work = args[args.length - 1] as (manager: unknown) => Promise<unknown>;
        return mainTransaction(...args.slice(0, -1), async (manager: unknown) => {
          await work(manager);
          throw new Error('injected commit failure');
        });
      }) as never);
      // Its audit data source's transaction starts once the recovery waits on the row.
      const { reached: atAudit, release } = holdNextTransaction(paused.audit);
      gate.open!();
      await atAudit;

      // The row is deleted, not committed: the rescuer reads it (no marker yet) and its DELETE waits.
      await takenForDead(paused, rescuer);
      const pass = rescuer.app.get(JournalRecovery).runPass();
      for (let waited = 0; !(await deleteIsWaiting(rescuer, db)); waited += 50) {
        if (waited > 20_000) throw new Error('the recovery never waited on the journal row of the unit');
        await sleep(50);
      }
      release();
      const status = (await answer).status;
      await pass;
      vi.restoreAllMocks();
      // The unit's retry, and more passes: nothing more is stored.
      await paused.app.get(JournalRecovery).runPass().catch(() => undefined);
      for (let i = 0; i < 2; i++) await rescuer.app.get(JournalRecovery).runPass();

      const record = (await rescuer.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => [row.action, row.kind, row.outcome]);
      expect({ status, record, journal: await journal.count() }).toEqual({ status: 500, record: [['order.gated', 'intent', 'success']], journal: 0 });
    } finally {
      gate.open?.();
      await paused.app.close().catch(() => undefined);
      await rescuer.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);
});

describe.each(databases())('two data sources on one database, a unit whose journal row a recovery stored, on %s', (kind) => {
  afterEach(() => vi.restoreAllMocks());

  /**
   * The unit's one journal row is in the audit data source's journal, which is the main data
   * source's too. Another instance, taking the unit's for dead, reads it through the main
   * data source (its pass read the audit data source's journal before the row was there):
   * for it a row of another data source, so it stores the unit's recovered event with the
   * row's marker, then deletes the row in the main data source's transaction — whose COMMIT
   * fails: the row is back, beside its marker. The unit then ends: its events are stored
   * already (the marker says so), and storing them again would give the request two records.
   */
  it('the unit ends after the recovery: one record (the recovered one), an empty journal', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `row-marked-${kind}`;
    const rescuer = await rescuerInstance(db, {}, [NoteController], [Note]);
    const paused = await twoDataSourceInstance(db, db, { recoverAfter: 60_000 }, [NoteController], [Note]);
    try {
      const note = await paused.audit.getRepository(Note).save({ text: 'new' });
      const journal = paused.audit.getRepository(AuditJournalEntity);
      await emptied(journal);
      closeGateHere();
      const answer = fetch(`${paused.url}/notes/${note.id}/gated`, { method: 'PATCH', headers: { 'x-request-id': requestId } });
      await gateReached;
      expect(await journal.count()).toBe(1);

      await recoveredThroughMain(paused, rescuer);
      const records = async () => (await rescuer.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => [row.action, row.kind, row.outcome]);
      const recovered = [['note.gated', 'intent', 'unknown']];
      // SQLite: one file, one writer — the recovery deletes the row in the transaction that stores its event.
      expect({ records: await records(), rows: await journal.count() }).toEqual({ records: recovered, rows: kind === 'sqlite' ? 0 : 2 });

      gate.open!();
      const status = (await answer).status;
      for (let i = 0; i < 2; i++) await rescuer.app.get(JournalRecovery).runPass();
      // Fail-closed: the request's own record could not be stored (a recovery's stands).
      expect({ status, records: await records(), journal: await journal.count() }).toEqual({ status: 500, records: recovered, journal: 0 });
    } finally {
      gate.open?.();
      await paused.app.close().catch(() => undefined);
      await rescuer.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);

  // SQLite: one file, one writer — the recovery deletes the rows in the transaction that stores their events.
  it.skipIf(kind === 'sqlite')('a unit whose first store failed, recovered before its retry: the retry stores nothing more', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `row-marked-retry-${kind}`;
    const rescuer = await rescuerInstance(db, {}, [NoteController], [Note]);
    const paused = await twoDataSourceInstance(db, db, { recoverAfter: 60_000 }, [NoteController], [Note]);
    const refusal = refuseSuccessOf(db, requestId);
    try {
      const note = await paused.audit.getRepository(Note).save({ text: 'new' });
      const journal = paused.audit.getRepository(AuditJournalEntity);
      await emptied(journal);
      for (const sql of refusal.on) await paused.audit.query(sql);
      // The unit: one journal row in the audit data source; its first store fails (audit_log refuses its row).
      closeGateHere();
      const answer = fetch(`${paused.url}/notes/${note.id}/gated`, { method: 'PATCH', headers: { 'x-request-id': requestId } });
      await gateReached;
      expect(await journal.count()).toBe(1);
      gate.open!();
      const status = (await answer).status;

      await recoveredThroughMain(paused, rescuer);
      const records = async () => (await rescuer.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => [row.action, row.kind, row.outcome]);
      const recovered = [['note.gated', 'intent', 'unknown']];
      expect({ records: await records(), rows: await journal.count() }).toEqual({ records: recovered, rows: 2 });

      // The unit's retry, once audit_log takes its rows again, and more passes.
      for (const sql of refusal.off) await paused.audit.query(sql);
      await paused.app.get(JournalRecovery).runPass();
      await sleep(1_200); // the rescuer's orphan pass takes journal rows older than its recoverAfter (1 s)
      for (let i = 0; i < 2; i++) await rescuer.app.get(JournalRecovery).runPass();
      expect({ status, records: await records(), journal: await journal.count() }).toEqual({ status: 500, records: recovered, journal: 0 });
    } finally {
      gate.open?.();
      for (const sql of refusal.off) await paused.audit.query(sql).catch(() => undefined);
      await paused.app.close().catch(() => undefined);
      await rescuer.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);

  it.skipIf(kind === 'sqlite')('a unit past its memory bound: its spilled parts are not stored a second time', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `row-marked-spilled-${kind}`;
    const rescuer = await rescuerInstance(db, { maxChangesPerEvent: 2 }, [NoteController], [Note]);
    const paused = await twoDataSourceInstance(db, db, { recoverAfter: 60_000, maxChangesPerEvent: 2 }, [NoteController], [Note]);
    try {
      const journal = paused.audit.getRepository(AuditJournalEntity);
      await emptied(journal);
      closeGateHere();
      const answer = fetch(`${paused.url}/notes/batch/gated`, { method: 'POST', headers: { 'x-request-id': requestId } });
      await gateReached;
      const unitRows = await journal.count();
      expect(unitRows, 'the unit kept its changes in the journal').toBeGreaterThan(0);

      await recoveredThroughMain(paused, rescuer);
      const records = async () => (await rescuer.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => `${row.kind}/${row.outcome}/${row.changes?.length ?? 0}`).sort();
      const recovered = await records();
      // Each row beside its marker.
      expect({ recovered: recovered.length > 0, rows: await journal.count() }).toEqual({ recovered: true, rows: 2 * unitRows });

      gate.open!();
      const status = (await answer).status;
      await sleep(1_200);
      for (let i = 0; i < 2; i++) await rescuer.app.get(JournalRecovery).runPass();
      expect({ status, records: await records(), journal: await journal.count() }).toEqual({ status: 500, records: recovered, journal: 0 });
    } finally {
      gate.open?.();
      await paused.app.close().catch(() => undefined);
      await rescuer.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);
});

describe.each(databases().filter((kind) => kind === 'sqlite'))('two data sources on one database, a recovery racing the unit storing its rows, on %s', (kind) => {
  afterEach(() => vi.restoreAllMocks());

  /**
   * SQLite has one writer: the unit's store cannot hold its row deleted while its events
   * commit. Its events and its marker commit first, then its row is deleted: a recovery that
   * read the row before that commit and deletes it before the unit does (its DELETE failing
   * here, as a crash between the two would leave it) finds the marker, and stores nothing.
   */
  it('a recovery that read the row before the marker, deleting it before the unit: one record, an empty journal', async () => {
    const db = await sharedDatabase(kind);
    const requestId = `store-race-${kind}`;
    const rescuer = await rescuerInstance(db, {}, [ShopController]);
    const paused = await twoDataSourceInstance(db, db, { recoverAfter: 60_000 }, [ShopController]);
    const keepRows = async (on: boolean): Promise<void> => {
      const connection = await new DataSource(db.options).initialize();
      try {
        await connection.query(
          on
            ? `CREATE TRIGGER keep_journal_rows BEFORE DELETE ON audit_journal WHEN OLD.entry NOT LIKE '%"stored":true%' BEGIN SELECT RAISE(ABORT, 'injected delete failure'); END`
            : 'DROP TRIGGER IF EXISTS keep_journal_rows',
        );
      } finally {
        await connection.destroy();
      }
    };
    try {
      const { answer, journal } = await gatedUnit(paused, requestId);

      // The rescuer reads the row (no marker yet) and stops before its transaction.
      const { reached: atTransaction, release } = holdNextTransaction(rescuer.audit);
      await takenForDead(paused, rescuer);
      const pass = rescuer.app.get(JournalRecovery).runPass();
      await atTransaction;

      // The unit stores its events and its marker; its row stays (its DELETE fails).
      await keepRows(true);
      gate.open!();
      const status = (await answer).status;
      await keepRows(false);
      release();
      await pass;
      // The marker left is cleared once old enough.
      await sleep(1_100);
      for (let i = 0; i < 2; i++) await rescuer.app.get(JournalRecovery).runPass();

      const record = (await rescuer.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => [row.action, row.kind, row.outcome]);
      expect({ status, record, journal: await journal.count() }).toEqual({ status: 200, record: [['order.gated', 'intent', 'success']], journal: 0 });
    } finally {
      gate.open?.();
      await keepRows(false).catch(() => undefined);
      await paused.app.close().catch(() => undefined);
      await rescuer.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);
});

/**
 * SQLite: the two data sources are two connections to one file, and one of them can write
 * at a time. The paths that store a unit's events while its rows in the other data source
 * are deleted (a retry, the parts of a unit past its memory bound) must not hold one
 * connection's transaction open while the other writes.
 */
describe.each(databases().filter((kind) => kind === 'sqlite'))('two data sources on one SQLite file, a unit stored through both connections, on %s', (kind) => {
  afterEach(() => vi.restoreAllMocks());

  /**
   * Waiting for a lock takes SQLite's busy timeout (the statement then fails): 30 s on these
   * connections, so that a wait is told apart from the work of a busy machine by a bound of 15 s.
   */
  const LOCK_WAIT_MS = 30_000;
  const BOUND_MS = 15_000;
  const patient = (db: TestDatabase): TestDatabase => ({ ...db, options: { ...db.options, timeout: LOCK_WAIT_MS } as TestDatabase['options'] });

  it('a unit whose first store failed is stored by its retry', async () => {
    const db = await sharedDatabase(kind);
    const app = await twoDataSourceInstance(patient(db), patient(db), { recoverAfter: 60_000 }, [ShopController]);
    try {
      const order = await app.main.getRepository(Order).save({ status: 'new', total: 1 });
      const journal = app.main.getRepository(AuditJournalEntity);
      await emptied(journal);
      await app.audit.getRepository(AuditLogEntity).clear();
      vi.spyOn(AuditWriter.prototype, 'write').mockRejectedValueOnce(new Error('injected write failure'));
      const response = await fetch(`${app.url}/shop/${order.id}/audited`, { method: 'PATCH', headers: { 'x-request-id': 'sqlite-retry' } });
      expect(response.status, 'fail-closed: the first store failed').toBe(500);
      expect(await journal.count()).toBe(1);

      const started = Date.now();
      await app.app.get(JournalRecovery).runPass();
      const record = (await app.audit.getRepository(AuditLogEntity).findBy({ requestId: 'sqlite-retry' })).map((row) => [row.action, row.outcome]);
      expect({ record, journal: await journal.count() }).toEqual({ record: [['order.noted', 'success']], journal: 0 });
      expect(Date.now() - started, 'the retry does not wait for a lock its own transaction holds').toBeLessThan(BOUND_MS);
    } finally {
      await app.app.close().catch(() => undefined);
      await db.drop();
    }
  }, 60_000);

  // The main data source names the file as the audit one does, or by another name of it.
  it.each(['the same path', 'a symbolic link', 'a hard link'])('a unit past its memory bound is stored whole (the file named by %s)', async (name) => {
    const db = await sharedDatabase(kind);
    const file = (db.options as { database: string }).database;
    const other = join(dirname(file), 'other-name.db');
    if (name === 'a symbolic link') symlinkSync(file, other);
    if (name === 'a hard link') {
      // An empty file is an empty SQLite database: made now, so that it can be linked.
      writeFileSync(file, '', { flag: 'a' });
      linkSync(file, other);
    }
    const main = name === 'the same path' ? db : ({ ...db, options: { ...db.options, database: other } } as TestDatabase);
    const app = await twoDataSourceInstance(patient(main), patient(db), { recoverAfter: 60_000, maxChangesPerEvent: 2 }, [ShopController]);
    try {
      const journal = app.main.getRepository(AuditJournalEntity);
      const spilled = vi.spyOn(JournalRecovery.prototype, 'spilledBatches');
      const started = Date.now();
      const response = await fetch(`${app.url}/shop/batch`, { method: 'POST', headers: { 'x-request-id': 'sqlite-spilled' } });
      expect(spilled, 'the unit kept its changes in the journal only').toHaveBeenCalled();
      const rows = await app.audit.getRepository(AuditLogEntity).findBy({ requestId: 'sqlite-spilled' });
      const inserted = rows.flatMap((row) => (row.changes ?? []).filter((change) => change.entity === 'Order' && change.operation === 'insert'));
      expect({ status: response.status, actions: [...new Set(rows.map((row) => row.action))], inserted: inserted.length }).toEqual({ status: 201, actions: ['order.batch'], inserted: 12 });
      expect(await journal.count()).toBe(0);
      expect(Date.now() - started, 'no transaction waits for a lock another of the same unit holds').toBeLessThan(BOUND_MS);
    } finally {
      await app.app.close().catch(() => undefined);
      rmSync(other, { force: true });
      await db.drop();
    }
  }, 60_000);
});
