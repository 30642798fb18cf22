import { createHmac, createSecretKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditEntities,
  AuditJournalEntity,
  AuditModule,
  InvalidAuditOptionsError,
  InvalidAuditQueryError,
  type AuditModuleOptions,
} from '../../lib/index.js';
import type { JournalEntry } from '../../lib/journal/journal-entry.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { SessionGatedController } from '../app/hostile-session.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The documented format, computed here independently: `hmac:` + base64url(HMAC-SHA-256(key, "type:id")). */
const expected = (key: Buffer | KeyObject, type: string, id: string): string =>
  `hmac:${createHmac('sha256', key).update(`${type}:${id}`).digest('base64url')}`;

const PSEUDONYM = /^hmac:[A-Za-z0-9_-]{43}$/;
const uuid = () => crypto.randomUUID();

describe.each(databases())('actor pseudonymisation with one key on %s', (kind) => {
  const key = randomBytes(32);
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      controllers: [SessionGatedController],
      audit: { pseudonymize: { key }, recoverAfter: 1000 },
    });
  });
  afterAll(async () => {
    t?.app.get(SessionGatedController).open();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('a request’s actor is stored as its pseudonym, without its display', async () => {
    const response = await t.request('/orders', { method: 'POST', json: { total: 3 }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.created', actorType: 'user', actorId: expected(key, 'user', '1'), actorDisplay: null });
    expect(rows[0]!.actorId).toMatch(PSEUDONYM);
    expect(JSON.stringify(rows)).not.toContain('alice@example.com');
  });

  it('runAs actors: the intent and the fallback change event carry the pseudonym', async () => {
    await t.audit.runAs({ type: 'user', id: 'ops-7', display: 'ops@example.com' }, async () => {
      await t.dataSource.getRepository(Order).save({ status: 'imported' });
      await t.audit.log({ action: 'orders.imported' });
    });
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind]).sort()).toEqual([
      ['order.created', 'change'],
      ['orders.imported', 'intent'],
    ]);
    for (const row of rows) expect(row).toMatchObject({ actorType: 'user', actorId: expected(key, 'user', 'ops-7'), actorDisplay: null });
    expect(JSON.stringify(rows)).not.toContain('ops-7');
  });

  it('log({ actor }) outside any unit of work: pseudonym of the given actor (a numeric id as its string)', async () => {
    await t.audit.log({ action: 'invoice.sent', actor: { type: 'service', id: 42, display: 'Billing' } });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actorType: 'service', actorId: expected(key, 'service', '42'), actorDisplay: null });
  });

  it('log({ actor }) inside a transaction outside any unit of work: written at the commit, pseudonymised', async () => {
    await t.dataSource.transaction(async (manager) => {
      await manager.getRepository(Order).save({ status: 'new' });
      await t.audit.log({ action: 'order.imported', actor: { type: 'user', id: 'importer-3', display: 'imp@example.com' } }, { manager });
    });
    const rows = await t.rows();
    expect(rows.find((row) => row.action === 'order.imported')).toMatchObject({ actorId: expected(key, 'user', 'importer-3'), actorDisplay: null });
    expect(JSON.stringify(rows)).not.toMatch(/importer-3|imp@example\.com/);
  });

  it('find() maps a clear id to its pseudonym, needs actorType for it, and takes a pseudonym as it is', async () => {
    await t.request('/orders', { method: 'POST', json: {}, headers: { authorization: 'Bearer alice-token' } });
    await t.request('/orders', { method: 'POST', json: {}, headers: { authorization: 'Bearer bob-token' } });
    await t.audit.log({ action: 'invoice.sent', actor: { type: 'service', id: '1' } });

    const alice = await t.audit.find({ actorId: '1', actorType: 'user' });
    expect(alice.items.map((event) => [event.action, event.actor])).toEqual([
      ['order.created', { type: 'user', id: expected(key, 'user', '1') }],
    ]);
    expect((await t.audit.find({ actor: { type: 'user', id: 1 } })).items.map((event) => event.id)).toEqual(alice.items.map((event) => event.id));
    expect((await t.audit.find({ actorId: '1', actorType: 'service' })).items.map((event) => event.action)).toEqual(['invoice.sent']);

    const pseudonym = t.audit.pseudonymOf({ type: 'user', id: 1 });
    expect(pseudonym).toBe(expected(key, 'user', '1'));
    expect((await t.audit.find({ actorId: pseudonym! })).items.map((event) => event.id)).toEqual(alice.items.map((event) => event.id));

    const error = await t.audit.find({ actorId: '1' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidAuditQueryError);
    expect((error as Error).message).toMatch(/actorType is required with actorId when actor ids are pseudonymised/);
    expect(() => t.audit.pseudonymOf({ type: '', id: '1' })).toThrow(/actor\.type must be a non-empty string/);
  });

  it('the journal holds the pseudonym, never the clear id or the display', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    const response = t.request(`/hostile/session/orders/${order.id}`, { method: 'PATCH', headers: { authorization: 'Bearer session-token' } });
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    const entries = (await journal.find()).map((row) => row.entry);
    t.app.get(SessionGatedController).open();
    expect((await response).status).toBe(200);

    expect(entries).toHaveLength(1);
    expect(entries[0]!.actor).toEqual({ type: 'user', id: expected(key, 'user', '7'), pseudonymised: true });
    expect(JSON.stringify(entries)).not.toContain('carol@example.com');
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.actorId, row.actorDisplay])).toEqual([['order.touched', expected(key, 'user', '7'), null]]);
  });

  it('recovered events: a pseudonym from the journal is stored as it is, a clear id from an older journal is pseudonymised', async () => {
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    const stored = expected(key, 'user', '7');
    // Rows of an instance that is gone (no lease), old enough to be recovered.
    const orphan = (requestId: string, actor: JournalEntry['actor']): AuditJournalEntity =>
      Object.assign(new AuditJournalEntity(), {
        id: uuid(),
        unitId: uuid(),
        instanceId: uuid(),
        createdAt: new Date(Date.now() - 3_600_000),
        entry: {
          source: 'http',
          request: { requestId },
          actor,
          changes: [{ entity: 'Order', id: '1', operation: 'update', fields: { note: { from: null, to: 'x' } }, at: Date.now() }],
        },
      });
    await journal.save([
      orphan('recovered-pseudonym', { type: 'user', id: stored, pseudonymised: true }),
      orphan('recovered-clear', { type: 'user', id: 'legacy-9', display: 'old@example.com' }),
    ]);
    await expect.poll(async () => (await t.rows()).length, { timeout: 10_000 }).toBe(2);
    const byRequest = Object.fromEntries((await t.rows()).map((row) => [row.requestId, row]));
    expect(byRequest['recovered-pseudonym']).toMatchObject({ action: 'order.updated', actorId: stored, actorDisplay: null });
    expect(byRequest['recovered-clear']).toMatchObject({ action: 'order.updated', actorId: expected(key, 'user', 'legacy-9'), actorDisplay: null });
  });
});

describe.each(databases())('actor pseudonymisation with keepDisplay and a base64 key on %s', (kind) => {
  const raw = randomBytes(32);
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'fastify', audit: { pseudonymize: { key: raw.toString('base64'), keepDisplay: true } } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('keeps the display, pseudonymises the id with the decoded key', async () => {
    const response = await t.request('/orders', { method: 'POST', json: {}, headers: { authorization: 'Bearer bob-token' } });
    expect(response.status).toBe(201);
    const rows = await t.rows();
    expect(rows.map((row) => [row.actorType, row.actorId, row.actorDisplay])).toEqual([['user', expected(raw, 'user', '2'), 'bob@example.com']]);
    expect((await t.audit.find({ actorId: '2', actorType: 'user' })).items).toHaveLength(1);
  });
});

describe.each(databases())('per-actor keys and erasure on %s', (kind) => {
  const keys = new Map<string, Buffer | KeyObject | string>();
  const aliceKey = randomBytes(32);
  const bobKey = createSecretKey(randomBytes(48));
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    keys.set('user:1', aliceKey);
    keys.set('user:2', bobKey);
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: {
        pseudonymize: {
          key: ({ type, id }) => {
            if (id === 'broken') throw new Error('key store unreachable');
            return keys.get(`${type}:${id}`);
          },
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('each actor’s rows under its own key; destroying one key erases that actor only', async () => {
    for (const token of ['alice-token', 'bob-token']) {
      expect((await t.request('/orders', { method: 'POST', json: {}, headers: { authorization: `Bearer ${token}` } })).status).toBe(201);
    }
    const before = await t.rows();
    expect(before.map((row) => row.actorId).sort()).toEqual([expected(aliceKey, 'user', '1'), expected(bobKey, 'user', '2')].sort());
    expect((await t.audit.find({ actorId: '1', actorType: 'user' })).items).toHaveLength(1);
    expect((await t.audit.find({ actorId: '2', actorType: 'user' })).items).toHaveLength(1);

    keys.delete('user:1'); // alice asked to be forgotten

    expect((await t.audit.find({ actorId: '1', actorType: 'user' })).items).toEqual([]);
    expect(t.audit.pseudonymOf({ type: 'user', id: '1' })).toBeNull();
    expect((await t.audit.find({ actorId: '2', actorType: 'user' })).items.map((event) => event.actor.id)).toEqual([expected(bobKey, 'user', '2')]);
    // Nothing was rewritten: her old row is still there, under a pseudonym nothing maps to any more.
    expect(await t.rows()).toEqual(before);
  });

  it('an actor whose key is gone (or whose key function throws): the event is stored, with no actor id, no display, and context.actorErased', async () => {
    await t.clearAudit();
    expect((await t.request('/orders', { method: 'POST', json: {}, headers: { authorization: 'Bearer alice-token' } })).status).toBe(201);
    await t.audit.runAs({ type: 'user', id: 'broken', display: 'b@example.com' }, () => t.audit.log({ action: 'report.exported', context: { format: 'csv' } }));
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.actorType, row.actorId, row.actorDisplay, row.context])).toEqual([
      ['order.created', 'user', null, null, { actorErased: true }],
      ['report.exported', 'user', null, null, { format: 'csv', actorErased: true }],
    ]);
    expect(JSON.stringify(rows)).not.toMatch(/alice@example\.com|broken|b@example\.com/);
  });
});

describe('the pseudonymize option, checked at start-up', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (closers.length) await closers.pop()!();
  });

  async function boot(options: AuditModuleOptions): Promise<unknown> {
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [
          TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [...AuditEntities], synchronize: true }),
          AuditModule.forRoot(options),
        ],
      }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      closers.push(() => app.close());
      await app.init();
      return undefined;
    } catch (error) {
      return error;
    }
  }

  const { privateKey } = generateKeyPairSync('ed25519');
  const invalid: Array<[string, unknown, RegExp]> = [
    ['pseudonymize', true, /"pseudonymize": must be an object such as \{ key: /],
    ['pseudonymize.key', {}, /"pseudonymize.key": is required: a key of at least 32 bytes/],
    ['pseudonymize.key', { key: randomBytes(16) }, /"pseudonymize.key": must be at least 32 bytes, got 16/],
    ['pseudonymize.key', { key: createSecretKey(randomBytes(31)) }, /"pseudonymize.key": must be at least 32 bytes, got 31/],
    ['pseudonymize.key', { key: privateKey }, /"pseudonymize.key": must be a secret KeyObject \(createSecretKey\), got a private key/],
    ['pseudonymize.key', { key: randomBytes(32).toString('hex') }, /"pseudonymize.key": is a string of hexadecimal digits; .*Buffer.from\(key, 'hex'\)/],
    ['pseudonymize.key', { key: randomBytes(16).toString('base64') }, /"pseudonymize.key": must be at least 32 bytes, got 16/],
    ['pseudonymize.key', { key: 'not base64 at all!' }, /"pseudonymize.key": a string key must be base64 or base64url/],
    ['pseudonymize.key', { key: 42 }, /"pseudonymize.key": must be a Buffer, a secret KeyObject or a base64 string, got number/],
    ['pseudonymize.keepDisplay', { key: randomBytes(32), keepDisplay: 'yes' }, /"pseudonymize.keepDisplay": must be true or false, got "yes"/],
    ['pseudonymize.salt', { key: randomBytes(32), salt: 'x' }, /"pseudonymize.salt": is not an option of pseudonymize \(known: key, keepDisplay\)/],
  ];

  it.each(invalid)('stops start-up on a bad "%s" with a message naming it', async (option, value, message) => {
    const error = await boot({ pseudonymize: value as never });
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect((error as InvalidAuditOptionsError).option).toBe(option);
    expect((error as Error).message).toMatch(message);
  });

  it('never puts the key in the message', async () => {
    const secret = randomBytes(32).toString('hex');
    const error = await boot({ pseudonymize: { key: secret } });
    expect((error as Error).message).not.toContain(secret);
  });

  it('starts with a good key (Buffer, KeyObject, base64url string, key function)', async () => {
    for (const key of [randomBytes(32), createSecretKey(randomBytes(32)), randomBytes(32).toString('base64url'), () => randomBytes(32)]) {
      expect(await boot({ pseudonymize: { key } })).toBeUndefined();
    }
  });
});
