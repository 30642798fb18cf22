import { createHash } from 'node:crypto';
import { BadRequestException, Controller, HttpCode, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, LessThan, MoreThanOrEqual, PrimaryGeneratedColumn } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, AuditInstanceEntity, AuditLogEntity, InvalidAuditEventError, type AuditActor } from '../../lib/index.js';
import { MAX_JSON_KEY } from '../../lib/events/json-safe.js';
import { uuidv7Time } from '../../lib/events/uuid-v7.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

const MB = 1024 * 1024;

/** A UTF-16 surrogate that is not part of a pair: it has no UTF-8 form. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** What PostgreSQL and MariaDB refuse: a NUL, or a lone surrogate. */
const unstorable = (text: string): boolean => text.includes('\u0000') || LONE_SURROGATE.test(text);

/** Every string and key in a JSON value. */
function texts(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const item of value) texts(item, out);
  else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      out.push(key);
      texts(item, out);
    }
  }
  return out;
}

/** Every text column and every string inside the JSON columns of a stored row. */
const rowTexts = (row: AuditLogEntity): string[] => [
  ...[row.action, row.actorType, row.actorId, row.actorDisplay, row.source, row.targetType, row.targetId, row.reason].filter(
    (value): value is string => typeof value === 'string',
  ),
  ...texts(row.changes),
  ...texts(row.context),
  ...texts(row.error),
];

/**
 * Hostile text for a column of `kind`: a NUL (PostgreSQL cannot hold one in an entity's
 * own text column, so the change itself could not be made there), lone surrogates, and
 * a megabyte.
 */
const hostileText = (kind: DatabaseKind): string => `${kind === 'postgres' ? '' : 'nul\u0000'}lone\ud800\udc00x\udc00${'m'.repeat(MB)}`;

/** An entity with a text column big enough for a megabyte on every database. */
function noteEntity(kind: DatabaseKind) {
  @Entity('hostile_notes')
  class HostileNote {
    @PrimaryGeneratedColumn()
    id!: number;

    @Column({ type: kind === 'mariadb' ? 'longtext' : 'text' })
    body!: string;
  }
  return HostileNote;
}

/** What the `@Audited` options of the hostile controller return; set by each test. */
const hostile: { actor?: AuditActor; reason?: string; targetId?: string; context?: Record<string, unknown>; body?: string } = {};

function hostileController(Note: ReturnType<typeof noteEntity>) {
  @Controller('hostile')
  class HostileController {
    constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

    @Post('call')
    @HttpCode(200)
    @Audited('hostile.called', {
      target: () => ({ type: 'probe', id: hostile.targetId! }),
      reason: () => hostile.reason,
      context: () => hostile.context,
    })
    call(): { ok: true } {
      return { ok: true };
    }

    @Post('fail')
    @Audited('hostile.failed')
    fail(): never {
      throw new BadRequestException(hostile.reason);
    }

    @Post('note')
    @HttpCode(200)
    @Audited('hostile.noted')
    async note(): Promise<{ id: number }> {
      const note = await this.dataSource.getRepository(Note).save({ body: hostile.body! });
      return { id: note.id };
    }
  }
  return HostileController;
}

describe.each(databases())('hostile values on %s', (kind) => {
  const Note = noteEntity(kind);
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      entities: [Note],
      controllers: [hostileController(Note)],
      audit: { actor: () => hostile.actor, maxContextBytes: MB },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
    for (const key of Object.keys(hostile)) delete hostile[key as keyof typeof hostile];
  });

  const onlyRow = async (): Promise<AuditLogEntity> => {
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    for (const row of rows) expect(rowTexts(row).filter(unstorable)).toEqual([]);
    return rows[0]!;
  };

  it('log() stores NUL bytes and lone surrogates in every text field and in context values and keys', async () => {
    const id = await t.audit.log({
      action: 'probe.logged',
      actor: { type: 'user', id: 'id\u0000\ud800', display: 'Mallory\u0000\udc00' },
      target: { type: 'probe', id: 'target\u0000\ud800' },
      reason: 'because\u0000\ud800',
      context: { 'key\u0000': 'value\u0000\ud800', ['lone\ud800']: { nested: ['x\u0000', 'y\udc00'] }, emoji: '😀' },
    });
    const row = await onlyRow();
    expect(row.id).toBe(id);
    expect(row.actorId).toBe('id\\u0000\ufffd');
    expect(row.actorDisplay).toBe('Mallory\\u0000\ufffd');
    expect(row.targetId).toBe('target\\u0000\ufffd');
    expect(row.reason).toBe('because\\u0000\ufffd');
    expect(row.context).toEqual({ 'key\\u0000': 'value\\u0000\ufffd', 'lone\ufffd': { nested: ['x\\u0000', 'y\ufffd'] }, emoji: '😀' });
    // Read back through the service too.
    const { items } = await t.audit.find({ action: 'probe.logged' });
    expect(items.map((event) => [event.actor.display, event.target?.id, event.reason])).toEqual([
      ['Mallory\\u0000\ufffd', 'target\\u0000\ufffd', 'because\\u0000\ufffd'],
    ]);
  });

  it('log() stores a context with megabyte values and keys, each cut with a marker', async () => {
    await t.audit.log({ action: 'probe.logged', context: { big: `\u0000${'b'.repeat(MB)}`, ['k'.repeat(MB)]: 1 } });
    const context = (await onlyRow()).context!;
    expect(context['big']).toMatch(/^\\u0000b+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    const key = Object.keys(context).find((name) => name.startsWith('kkk'))!;
    expect(key.length).toBeLessThanOrEqual(MAX_JSON_KEY);
    expect(key).toMatch(/^k+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
  });

  it('log() stores megabyte actor id, display, target id and reason cut as @Audited stores them (they were refused), and refuses a long type', async () => {
    const huge = 'h'.repeat(MB);
    await t.audit.log({ action: 'probe.logged', actor: { type: 'user', id: huge, display: huge }, target: { type: 'probe', id: huge }, reason: huge });
    const row = await onlyRow();
    const cutId = new RegExp(`^h+…\\[truncated \\d+ chars; sha256 ${createHash('sha256').update(huge).digest('hex').slice(0, 16)}\\]$`);
    expect(row.actorId).toMatch(cutId);
    expect(row.actorId!.length).toBeLessThanOrEqual(255);
    expect(row.targetId).toMatch(cutId);
    expect(row.actorDisplay).toBe('h'.repeat(255));
    expect(row.reason).toBe('h'.repeat(1024));
    expect((await t.audit.find({ target: { type: 'probe', id: huge } })).items.map((event) => event.id)).toEqual([row.id]);
    expect((await t.audit.find({ actorType: 'user', actorId: huge })).items.map((event) => event.id)).toEqual([row.id]);

    // Types are the developer's identifiers: one too long is a mistake, refused by name, nothing written.
    for (const input of [
      { action: 'probe.logged', actor: { type: 'u'.repeat(65) } },
      { action: 'probe.logged', target: { type: 'p'.repeat(129), id: '1' } },
    ]) {
      const attempt = t.audit.log(input);
      await expect(attempt).rejects.toBeInstanceOf(InvalidAuditEventError);
      await expect(attempt).rejects.toThrow(/type must be shorter than or equal to/);
    }
    expect(await t.rows()).toHaveLength(1);
  });

  it('runAs() with a megabyte actor id and display: runs, its events store them cut (they were refused)', async () => {
    const huge = 'j'.repeat(MB);
    const result = await t.audit.runAs({ type: 'user', id: huge, display: huge }, async () => {
      await t.audit.log({ action: 'probe.ran' });
      return 'ran';
    });
    expect(result).toBe('ran');
    const row = await onlyRow();
    expect(row.actorId).toMatch(/^j+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    expect(row.actorDisplay).toBe('j'.repeat(255));
    expect((await t.audit.find({ actorType: 'user', actorId: huge })).items.map((event) => event.action)).toEqual(['probe.ran']);
  });

  it('an @Audited call stores megabyte, NUL and lone-surrogate actor, target, reason and context, bounded', async () => {
    const huge = `\u0000\ud800${'h'.repeat(MB)}`;
    Object.assign(hostile, {
      actor: { type: 'user', id: huge, display: huge },
      targetId: huge,
      reason: huge,
      context: { [`key${huge}`]: huge, ok: 'fine' },
    });
    const response = await t.request('/hostile/call', { method: 'POST' });
    expect(response.status).toBe(200);
    const row = await onlyRow();
    expect(row.action).toBe('hostile.called');
    // Ids are cut with a digest of the whole (so that a search by the id given finds them); other columns plainly.
    const cutId = new RegExp(`^\\\\u0000\ufffdh+…\\[truncated \\d+ chars; sha256 ${createHash('sha256').update(`\\u0000\ufffd${'h'.repeat(MB)}`).digest('hex').slice(0, 16)}\\]$`);
    expect(row.actorId).toMatch(cutId);
    expect(row.actorId!.length).toBeLessThanOrEqual(255);
    expect(row.actorDisplay).toHaveLength(255);
    expect(row.targetId).toMatch(cutId);
    expect(row.targetId!.length).toBeLessThanOrEqual(255);
    expect(await t.audit.history({ type: 'probe', id: huge })).toHaveLength(1);
    expect(row.reason).toBe(`\\u0000\ufffd${'h'.repeat(1024 - 7)}`);
    const entries = Object.entries(row.context!);
    expect(entries).toHaveLength(2);
    expect(entries[1]).toEqual(['ok', 'fine']);
    const [key, value] = entries[0]!;
    expect(key.length).toBeLessThanOrEqual(MAX_JSON_KEY);
    expect(key).toMatch(/^key\\u0000\ufffdh+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    expect(value).toMatch(/^\\u0000\ufffdh+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
  });

  it('an @Audited call keeps a context within the size bound, its long strings cut', async () => {
    Object.assign(hostile, { targetId: '1', context: { text: `\u0000${'c'.repeat(MB)}` } });
    expect((await t.request('/hostile/call', { method: 'POST' })).status).toBe(200);
    const row = await onlyRow();
    expect(row.context!['text']).toMatch(/^\\u0000c+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
  });

  it("an @Audited call's failure with a hostile message stores a storable error", async () => {
    hostile.reason = `bad\u0000\ud800${'e'.repeat(MB)}`;
    expect((await t.request('/hostile/fail', { method: 'POST' })).status).toBe(400);
    const row = await onlyRow();
    expect(row.outcome).toBe('failure');
    expect(row.error).toEqual({ name: 'BadRequestException', status: 400, message: `bad\\u0000\ufffd${'e'.repeat(512 - 10)}` });
  });

  it('a change with hostile text outside any request is captured and stored (fallback event)', async () => {
    const body = hostileText(kind);
    const before = Date.now();
    const note = await t.dataSource.getRepository(Note).save({ body });
    const row = await onlyRow();
    expect(row.kind).toBe('change');
    expect(row.targetId).toBe(String(note.id));
    const to = (row.changes![0]!.fields['body'] as { to: string }).to;
    expect(to.startsWith(kind === 'postgres' ? 'lone\ud800\udc00x\ufffd' : 'nul\\u0000lone\ud800\udc00x\ufffd')).toBe(true);
    expect(to).toMatch(/m…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    // The id of a fallback event carries the change's own time.
    expect(uuidv7Time(row.id)).toBe(row.occurredAt.getTime());
    expect(row.occurredAt.getTime()).toBeGreaterThanOrEqual(before);
  });

  it('a change with hostile text and a hostile actor inside an @Audited request is stored', async () => {
    Object.assign(hostile, { body: hostileText(kind), actor: { type: 'user', id: 'u\u0000\ud800', display: 'd\udc00\u0000' } });
    const response = await t.request('/hostile/note', { method: 'POST' });
    expect(response.status).toBe(200);
    const { id } = (await response.json()) as { id: number };
    const row = await onlyRow();
    expect(row).toMatchObject({ action: 'hostile.noted', kind: 'intent', actorId: 'u\\u0000\ufffd', actorDisplay: 'd\ufffd\\u0000', targetId: String(id) });
    expect((row.changes![0]!.fields['body'] as { to: string }).to).toMatch(/lone\ud800\udc00x\ufffdm+…\[truncated/);
    expect(await t.dataSource.getRepository(Note).countBy({ id })).toBe(1);
  });
});

/** The process time zones the reads run under. */
const ZONES = ['Asia/Tokyo', 'America/Los_Angeles', 'UTC'] as const;

/** The data source options that put the database session in Asia/Tokyo (+09:00). */
function inTokyoSession(db: TestDatabase): TestDatabase {
  const options = db.options as unknown as Record<string, unknown>;
  const extra = options['extra'] as Record<string, unknown> | undefined;
  switch (db.kind) {
    case 'postgres':
      return { ...db, options: { ...db.options, extra: { ...extra, options: '-c timezone=Asia/Tokyo' } } as TestDatabase['options'] };
    case 'mariadb':
      // One connection, so that `SET time_zone` (below) holds for every query.
      return { ...db, options: { ...db.options, timezone: '+09:00', extra: { ...extra, connectionLimit: 1 } } as TestDatabase['options'] };
    default:
      return db;
  }
}

const sessions = databases().flatMap((kind) => [
  [kind, 'default'] as const,
  ...(kind === 'sqlite' ? [] : [[kind, 'Asia/Tokyo'] as const]),
]);

describe.each(sessions)('UTC times on %s, database session time zone %s', (kind, session) => {
  const originalTz = process.env['TZ'];
  let db: TestDatabase;
  let t: TestApp;

  const sql = (text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> => t.dataSource.query(text, params);
  const table = (entity: typeof AuditLogEntity | typeof AuditInstanceEntity): string =>
    t.dataSource
      .getMetadata(entity)
      .tablePath.split('.')
      .map((part) => t.dataSource.driver.escape(part))
      .join('.');
  /** A date column as the database holds it, `YYYY-MM-DDTHH:MM:SS.mmm`, read by SQL (no driver conversion). */
  const text = (column: string): string =>
    kind === 'postgres'
      ? `to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS.MS')`
      : kind === 'mariadb'
        ? `DATE_FORMAT(${column}, '%Y-%m-%dT%H:%i:%s.%f')`
        : `replace(${column}, ' ', 'T')`;
  /** The instant a stored wall-clock time stands for when read as UTC. */
  const asUtc = (stored: unknown): number => Date.parse(`${String(stored).slice(0, 23)}Z`);

  beforeAll(async () => {
    // The app starts (and writes its instance row) in a zone far from UTC.
    process.env['TZ'] = 'Asia/Tokyo';
    const base = await createTestDatabase(kind);
    db = session === 'default' ? base : inTokyoSession(base);
    t = await createTestApp({ db, adapter: 'express' });
    if (session !== 'default') {
      if (kind === 'mariadb') await t.dataSource.query("SET time_zone = '+09:00'");
      const [zone] = await sql(kind === 'mariadb' ? 'SELECT @@session.time_zone AS zone' : 'SHOW timezone');
      expect(Object.values(zone!)[0]).toMatch(/^(\+09:00|Asia\/Tokyo)$/);
    }
  });
  afterAll(async () => {
    if (originalTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = originalTz;
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });

  const logIn = async (zone: string): Promise<{ id: string; before: number; after: number }> => {
    process.env['TZ'] = zone;
    const before = Date.now();
    const id = await t.audit.log({ action: 'clock.checked', context: { zone } });
    return { id, before, after: Date.now() };
  };
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('stores and reads back the logged instant, and orders by it, whatever the process zone', async () => {
    const tokyo = await logIn('Asia/Tokyo');
    await pause(5);
    const losAngeles = await logIn('America/Los_Angeles');
    const logged = new Map([tokyo, losAngeles].map((entry) => [entry.id, entry]));

    for (const zone of ZONES) {
      process.env['TZ'] = zone;
      // find(): newest first, each at its own instant, its id carrying the same instant.
      const { items } = await t.audit.find({ action: 'clock.checked' });
      expect(items.map((event) => event.id)).toEqual([losAngeles.id, tokyo.id]);
      for (const event of items) {
        const { before, after } = logged.get(event.id)!;
        expect(event.occurredAt.getTime()).toBeGreaterThanOrEqual(before);
        expect(event.occurredAt.getTime()).toBeLessThanOrEqual(after);
        expect(uuidv7Time(event.id)).toBe(event.occurredAt.getTime());
      }
      // Time filters and the cursor compare against the same UTC values.
      expect((await t.audit.find({ action: 'clock.checked', from: new Date(losAngeles.before) })).items.map((e) => e.id)).toEqual([losAngeles.id]);
      expect((await t.audit.find({ action: 'clock.checked', to: new Date(losAngeles.before) })).items.map((e) => e.id)).toEqual([tokyo.id]);
      // So do TypeORM's own find options on the entity.
      const repository = t.dataSource.getRepository(AuditLogEntity);
      expect((await repository.findBy({ occurredAt: MoreThanOrEqual(new Date(losAngeles.before)) })).map((row) => row.id)).toEqual([losAngeles.id]);
      expect((await repository.findBy({ occurredAt: LessThan(new Date(losAngeles.before)) })).map((row) => row.id)).toEqual([tokyo.id]);
      const first = await t.audit.find({ action: 'clock.checked', limit: 1 });
      expect(first.items.map((e) => e.id)).toEqual([losAngeles.id]);
      const second = await t.audit.find({ action: 'clock.checked', limit: 1, cursor: first.nextCursor! });
      expect(second.items.map((e) => e.id)).toEqual([tokyo.id]);
    }

    // Raw SQL: the column holds the UTC wall-clock time.
    const rows = await sql(`SELECT id, ${text('occurred_at')} AS at FROM ${table(AuditLogEntity)}`);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      const { before, after } = logged.get(String(row['id']))!;
      expect(asUtc(row['at'])).toBeGreaterThanOrEqual(before);
      expect(asUtc(row['at'])).toBeLessThanOrEqual(after);
    }
  });

  it("writes the instance's started_at and heartbeat_at in UTC", async () => {
    const now = Date.now();
    const rows = await sql(`SELECT ${text('started_at')} AS started, ${text('heartbeat_at')} AS beat FROM ${table(AuditInstanceEntity)}`);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    for (const row of rows) {
      expect(Math.abs(asUtc(row['started']) - now)).toBeLessThan(120_000);
      expect(Math.abs(asUtc(row['beat']) - now)).toBeLessThan(120_000);
    }
  });
});
