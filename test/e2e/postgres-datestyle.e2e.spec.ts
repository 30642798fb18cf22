// PostgreSQL connections whose DateStyle is not ISO (set per connection, e.g. with
// node-postgres' `options: '-c DateStyle=SQL,DMY'`, by a role's or a database's default,
// or by a SET): the module still reads `occurred_at` (timestamp without time zone) as the
// instant stored, so verify() and the CLI agree with a default connection and the leaves
// an app signs over such connections are right.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { cli, problemBriefs } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/datestyle';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);
const SETTINGS = '-c DateStyle=SQL,DMY';
const STYLES = ['SQL, DMY', 'SQL, MDY', 'German', 'Postgres, DMY', 'Postgres, MDY', 'ISO, DMY'];
const AUDIT = { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };

const withSettings = (db: TestDatabase, settings = SETTINGS): TestDatabase =>
  ({ ...db, options: { ...db.options, extra: { ...(db.options as { extra?: object }).extra, options: settings } } }) as TestDatabase;

describe.runIf(databases().includes('postgres'))('DateStyle other than ISO on a PostgreSQL connection', () => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    t = await createTestApp({ db, adapter: 'express', audit: AUDIT });
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    await t.audit.checkpoint();
    expect((await t.audit.verify()).ok).toBe(true);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('verify() from an app whose connections use DateStyle=SQL,DMY, and the CLI with it in the URL, say OK', async () => {
    const other = await createTestApp({ db: withSettings(db), adapter: 'express', audit: AUDIT });
    try {
      expect(await other.dataSource.query('SHOW DateStyle')).toEqual([{ DateStyle: 'SQL, DMY' }]);
      expect(problemBriefs((await other.audit.verify()).problems)).toEqual([]);
    } finally {
      await other.close();
    }
    const url = `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}?options=${encodeURIComponent(SETTINGS)}`;
    const run = await cli('verify', '--url', url, '--schema', (db.options as { schema: string }).schema, '--public-key', VKEY);
    expect(run.stdout.split('\n')[0]).toMatch(/^OK/);
  });

  it.each(STYLES)('an app whose connections use DateStyle %s reads the instants stored', async (style) => {
    const expected = (await t.audit.find({})).items.map((event) => event.occurredAt.toISOString());
    const other = await createTestApp({ db: withSettings(db, `-c DateStyle=${style.replace(' ', '')}`), adapter: 'express', audit: AUDIT });
    try {
      expect((await other.dataSource.query('SHOW DateStyle'))[0].DateStyle).toContain(style.split(',')[0]);
      expect((await other.audit.find({})).items.map((event) => event.occurredAt.toISOString())).toEqual(expected);
      expect(problemBriefs((await other.audit.verify()).problems)).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('a connection whose DateStyle an app SETs after the module first read on it', async () => {
    const expected = (await t.audit.find({})).items.map((event) => event.occurredAt.toISOString());
    const runner = t.dataSource.createQueryRunner();
    try {
      await runner.connect();
      expect((await runner.manager.getRepository(AuditLogEntity).find({ order: { occurredAt: 'DESC', id: 'DESC' } })).map((event) => event.occurredAt.toISOString())).toEqual(expected);
      await runner.query(`SET DateStyle = 'SQL, DMY'`);
      expect((await runner.manager.getRepository(AuditLogEntity).find({ order: { occurredAt: 'DESC', id: 'DESC' } })).map((event) => event.occurredAt.toISOString())).toEqual(expected);
      await runner.query(`SET DateStyle = 'Postgres, MDY'`);
      expect((await runner.manager.getRepository(AuditLogEntity).find({ order: { occurredAt: 'DESC', id: 'DESC' } })).map((event) => event.occurredAt.toISOString())).toEqual(expected);
    } finally {
      await runner.query('RESET DateStyle').catch(() => undefined);
      await runner.release();
    }
  });

  it('an app whose connections use DateStyle=SQL,DMY signs leaves that verify OK from a default connection', async () => {
    const own = await createTestDatabase('postgres');
    try {
      const app = await createTestApp({ db: withSettings(own), adapter: 'express', audit: AUDIT });
      try {
        for (let i = 0; i < 3; i++) await app.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
        await app.audit.checkpoint();
      } finally {
        await app.close();
      }
      const plain = await createTestApp({ db: own, adapter: 'express', audit: AUDIT });
      try {
        expect(problemBriefs((await plain.audit.verify()).problems)).toEqual([]);
      } finally {
        await plain.close();
      }
    } finally {
      await own.drop();
    }
  });
});
