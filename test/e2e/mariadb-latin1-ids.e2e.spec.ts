// find() and history() on a MariaDB database whose default character set is latin1: the
// audit tables are created in it, and a target id with an accent is still found.
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { MARIADB } from '../support/database-probe.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const run = databases().includes('mariadb') ? describe : describe.skip;

run('exact id matching on a latin1 MariaDB database', () => {
  let db: TestDatabase;
  let t: TestApp;
  const name = `audit_chk_${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    const admin = await mysql.createConnection(MARIADB);
    await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET latin1 COLLATE latin1_swedish_ci`);
    await admin.end();
    db = {
      kind: 'mariadb',
      options: { type: 'mariadb', host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: name },
      drop: async () => {
        const client = await mysql.createConnection(MARIADB);
        await client.query(`DROP DATABASE IF EXISTS \`${name}\``);
        await client.end();
      },
    };
    t = await createTestApp({ db, adapter: 'express' });
    await t.dataSource.getRepository(AuditLogEntity).insert({
      id: '01900000-0000-7000-8000-000000000001',
      occurredAt: new Date('2026-02-01T00:00:00.000Z'),
      action: 'doc.edited',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: 'josé',
      source: 'http',
      targetType: 'doc',
      targetId: 'café',
    } as never);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('finds the event of a target id with an accent', async () => {
    const page = await t.audit.find({ target: { type: 'doc', id: 'café' } });
    expect(page.items.map((e) => e.id)).toEqual(['01900000-0000-7000-8000-000000000001']);
  });

  it('finds the event of an actor id with an accent', async () => {
    const page = await t.audit.find({ actorId: 'josé' });
    expect(page.items.map((e) => e.id)).toEqual(['01900000-0000-7000-8000-000000000001']);
  });

  it('history() of a target id with an accent', async () => {
    const events = await t.audit.history({ type: 'doc', id: 'café' });
    expect(events.map((e) => e.id)).toEqual(['01900000-0000-7000-8000-000000000001']);
  });
});
