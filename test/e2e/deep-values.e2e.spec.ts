// Deeply nested values on every path into a JSON column: `log()`'s context, an `@Audited`
// context option, a captured change of an app's own JSON document (inside a unit, where
// it is journaled, and outside any unit, as a fallback event), and recovery from the
// journal. MariaDB's JSON columns check `json_valid`, which refuses a document of 32
// nested arrays and objects: the bound applies to the whole stored document (a change's
// value sits five levels down in a journal entry), not to the value alone.
import { Controller, HttpCode, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { DEPTH_MARKER } from '../../lib/events/json-safe.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { sharedDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `{ a: { a: … { a: leaf } } }`, `levels` objects deep. */
const nested = (levels: number, leaf: unknown = 1): Record<string, unknown> => {
  let value: Record<string, unknown> = { a: leaf };
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
};

/** Arrays and objects nested in a JSON value, at the deepest. */
const depthOf = (value: unknown): number =>
  typeof value === 'object' && value !== null ? 1 + Math.max(0, ...Object.values(value).map(depthOf)) : 0;

/** Nesting a stored JSON document has at most (MariaDB's json_valid refuses 32). */
const DOCUMENT_DEPTH = 31;
/** Nesting a changed field's value keeps: its journal entry (entry, changes, change, fields, field) takes five. */
const FIELD_VALUE_DEPTH = DOCUMENT_DEPTH - 5;

@Entity('deep_docs')
class DeepDoc {
  @PrimaryGeneratedColumn()
  id!: number;

  /** The app's own JSON document (TypeORM's simple-json: a text column, any depth). */
  @Column({ type: 'simple-json' })
  body!: unknown;
}

/** How deep the documents and contexts of the controller are; set by each test. */
const levels = { value: 40 };

@Controller('deep')
class DeepController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post('context')
  @HttpCode(200)
  @Audited('deep.context', { context: () => nested(levels.value) })
  context(): { ok: true } {
    return { ok: true };
  }

  @Post('doc')
  @HttpCode(200)
  @Audited('deep.saved')
  async doc(): Promise<{ id: number }> {
    const doc = await this.dataSource.getRepository(DeepDoc).save({ body: nested(levels.value) });
    return { id: doc.id };
  }

  /** Commits the document, then never finishes: as a process that dies there would leave it. */
  @Post('stalled')
  @Audited('deep.stalled')
  async stalled(): Promise<never> {
    await this.dataSource.getRepository(DeepDoc).save({ body: nested(levels.value) });
    return new Promise<never>(() => undefined);
  }
}

describe.each(databases())('deeply nested values on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await sharedDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: [DeepDoc], controllers: [DeepController], audit: { shutdownTimeout: 200 } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    levels.value = 40;
    // clear() is raw SQL (TRUNCATE): its fallback event is stored before it returns, then cleared.
    await t.seed(() => t.dataSource.getRepository(DeepDoc).clear());
  });

  /** The one change's `body.to` of the only event, which has `action` and `kind`. */
  const storedBody = async (action: string, eventKind: AuditLogEntity['kind']): Promise<unknown> => {
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind])).toEqual([[action, eventKind]]);
    const changes = rows[0]!.changes!;
    expect(changes.map((change) => [change.entity, change.operation])).toEqual([['DeepDoc', 'insert']]);
    return (changes[0]!.fields['body'] as { to: unknown }).to;
  };

  it('log() with a 40-level context is stored, kept to the bound with a marker; a context at the bound is kept whole', async () => {
    await expect(t.audit.log({ action: 'deep.logged', context: nested(40) })).resolves.toEqual(expect.any(String));
    await t.audit.log({ action: 'deep.fits', context: nested(DOCUMENT_DEPTH) });
    const rows = await t.rows();
    expect(rows.map((row) => row.action)).toEqual(['deep.logged', 'deep.fits']);
    expect(rows[0]!.context).toEqual(nested(DOCUMENT_DEPTH, DEPTH_MARKER));
    expect(rows[1]!.context).toEqual(nested(DOCUMENT_DEPTH));
  });

  it('an @Audited call whose context option is 40 levels deep answers 200 with its event', async () => {
    const response = await t.request('/deep/context', { method: 'POST' });
    expect(response.status).toBe(200);
    const rows = await t.rows();
    expect(rows.map((row) => row.action)).toEqual(['deep.context']);
    expect(rows[0]!.context).toEqual(nested(DOCUMENT_DEPTH, DEPTH_MARKER));
  });

  it('an @Audited request saving a 40-level JSON document: 200, the document committed, the value kept to the bound', async () => {
    const response = await t.request('/deep/doc', { method: 'POST' });
    expect(response.status).toBe(200);
    expect(await t.dataSource.getRepository(DeepDoc).count()).toBe(1);
    expect(await storedBody('deep.saved', 'intent')).toEqual(nested(FIELD_VALUE_DEPTH, DEPTH_MARKER));
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('a value at the bound is kept whole', async () => {
    levels.value = FIELD_VALUE_DEPTH;
    expect((await t.request('/deep/doc', { method: 'POST' })).status).toBe(200);
    expect(await storedBody('deep.saved', 'intent')).toEqual(nested(FIELD_VALUE_DEPTH));
  });

  it('a 40-level JSON document saved outside any unit of work: the save succeeds, one fallback event', async () => {
    await expect(t.dataSource.getRepository(DeepDoc).save({ body: nested(40) })).resolves.toMatchObject({ id: expect.any(Number) });
    expect(await storedBody('deepDoc.created', 'change')).toEqual(nested(FIELD_VALUE_DEPTH, DEPTH_MARKER));
  });

  it('a 40-level JSON document of an instance that died: journaled in its transaction, then recovered by another instance', async () => {
    const abort = new AbortController();
    const stalled = t.request('/deep/stalled', { method: 'POST', signal: abort.signal });
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) {
      if (await Promise.race([stalled.then(() => true, () => true), sleep(50).then(() => false)])) break;
    }
    const entries = await journal.find();
    expect(entries).toHaveLength(1);
    expect(depthOf(entries[0]!.entry)).toBeLessThanOrEqual(DOCUMENT_DEPTH);
    expect(await t.dataSource.getRepository(DeepDoc).count()).toBe(1);

    // This instance is taken for dead: its lease aged past the rescuer's recoverAfter.
    await t.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder().update().set({ heartbeatAt: new Date(Date.now() - 3_600_000) }).execute();
    const rescuer = await createTestApp({ db, adapter: 'express', entities: [DeepDoc], audit: { recoverAfter: 1_000 } });
    try {
      for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
      expect(await journal.count()).toBe(0);
      expect(await storedBody('deep.stalled', 'intent')).toEqual(nested(FIELD_VALUE_DEPTH, DEPTH_MARKER));
    } finally {
      abort.abort();
      await rescuer.close();
    }
  });
});
