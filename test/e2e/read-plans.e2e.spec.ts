import type { BeforeQueryEvent, EntitySubscriberInterface } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditService, type AuditQuery } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const EVENTS = 40_000;

/**
 * The statements `find()` sends for its filters are answered from an index of
 * `audit_log` (PostgreSQL's plan on 40,000 analysed rows): a page of one request's or one
 * actor id's events does not read the whole table.
 */
describe.runIf(databases().includes('postgres'))('find() query plans on postgres', () => {
  let db: TestDatabase;
  let t: TestApp;
  let audit: AuditService;
  const sent: BeforeQueryEvent[] = [];
  let capturing = false;

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    t = await createTestApp({ db, adapter: 'express' });
    audit = t.app.get(AuditService);
    const capture: EntitySubscriberInterface = { beforeQuery: (event) => void (capturing && sent.push(event)) };
    t.dataSource.subscribers.push(capture);
    const schema = 'schema' in db.options ? db.options.schema : undefined;
    const log = schema ? `"${schema}".audit_log` : 'audit_log';
    await t.dataSource.query(
      `INSERT INTO ${log} (id, occurred_at, action, outcome, kind, source, request_id, actor_type, actor_id)
       SELECT gen_random_uuid(), now() - make_interval(secs => n), 'thing.done', 'success', 'intent', 'http',
              'req-' || (n / 2), CASE WHEN n % 3 = 0 THEN 'user' ELSE 'service' END, 'actor-' || (n % 5000)
         FROM generate_series(1, ${EVENTS}) AS n`,
    );
    await t.dataSource.query(`ANALYZE ${log}`);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  /** PostgreSQL's plan of the statement `find(query)` sends. */
  async function planOf(query: AuditQuery): Promise<string> {
    sent.length = 0;
    capturing = true;
    try {
      await audit.find(query);
    } finally {
      capturing = false;
    }
    const statement = sent.find((event) => /FROM \S*audit_log\b/i.test(event.query) && /ORDER BY/i.test(event.query));
    expect(statement, 'the statement find() sent').toBeDefined();
    const rows: Array<{ 'QUERY PLAN': string }> = await t.dataSource.query(`EXPLAIN ${statement!.query}`, statement!.parameters);
    return rows.map((row) => row['QUERY PLAN']).join('\n');
  }

  it.each([
    ['requestId', { requestId: 'req-777' }, 'idx_audit_log_request'],
    ['actorId without actorType', { actorId: 'actor-42' }, 'idx_audit_log_actor_id'],
    ['actorType and actorId', { actorType: 'user', actorId: 'actor-42' }, 'idx_audit_log_actor'],
  ] as const)('a page by %s reads an index, not the whole table', async (_name, query, index) => {
    const plan = await planOf({ ...query, limit: 50 });
    expect(plan).not.toMatch(/Seq Scan on audit_log/);
    expect(plan).toContain(index);
  });
});
