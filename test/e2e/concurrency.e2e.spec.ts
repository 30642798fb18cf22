import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const REQUESTS = 500;
const USERS = 50;
const ROUNDS = 3;
const pause = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 3));

// SQLite and PostgreSQL (the pool of MariaDB adds nothing the other two do not show).
const combos = databases()
  .filter((kind) => kind !== 'mariadb')
  .flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('no context bleed under concurrency on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;
  let orderIds: number[];

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter });
    const orders = await t.seed(() => t.dataSource.getRepository(Order).save(Array.from({ length: USERS }, (_, i) => ({ status: 'new', total: i }))));
    orderIds = orders.map((order) => order.id);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it.each(Array.from({ length: ROUNDS }, (_, round) => round + 1))(
    'round %i: 500 requests from 50 users, interleaved with jobs: every event names its own actor and request',
    async (round) => {
      await t.clearAudit();
      const requests = Array.from({ length: REQUESTS }, (_, i) => ({
        user: i % USERS,
        orderId: orderIds[(i * 7) % orderIds.length]!,
        requestId: `r${round}-${i}`,
        note: `note-${round}-${i}`,
      }));
      const jobs = Array.from({ length: 50 }, (_, i) => ({ id: `job-${round}-${i}`, requestId: `j${round}-${i}` }));

      const responses = await Promise.all([
        ...requests.map(async (r) => {
          const response = await t.request(`/orders/${r.orderId}/touch`, {
            method: 'PATCH',
            json: { note: r.note },
            headers: { authorization: `Bearer user-${r.user}`, 'x-request-id': r.requestId },
          });
          return { status: response.status, echoed: response.headers.get('x-request-id') };
        }),
        ...jobs.map(async (job) => {
          await t.audit.runAs(
            { type: 'service', id: job.id },
            async () => {
              await pause();
              await t.audit.log({ action: 'job.ran', target: { type: 'job', id: job.id } });
              await pause();
            },
            { requestId: job.requestId },
          );
          return { status: 200, echoed: job.requestId };
        }),
      ]);
      expect(responses.filter((r) => r.status !== 200)).toEqual([]);

      const rows = await t.rows();
      const touched = rows.filter((row) => row.action === 'order.touched');
      const ran = rows.filter((row) => row.action === 'job.ran');
      expect(touched).toHaveLength(REQUESTS);
      expect(ran).toHaveLength(jobs.length);
      expect(rows).toHaveLength(REQUESTS + jobs.length); // nothing else: no fallback duplicates

      const byRequest = new Map(requests.map((r) => [r.requestId, r]));
      const mismatches: string[] = [];
      for (const row of touched) {
        const sent = byRequest.get(row.requestId!);
        if (!sent) {
          mismatches.push(`unknown request id ${row.requestId}`);
          continue;
        }
        byRequest.delete(row.requestId!);
        if (row.actorId !== String(1000 + sent.user)) mismatches.push(`${sent.requestId}: actor ${row.actorId}`);
        if (row.targetId !== String(sent.orderId)) mismatches.push(`${sent.requestId}: target ${row.targetId}`);
        const change = row.changes?.[0];
        if (row.changes?.length !== 1 || change?.id !== String(sent.orderId)) mismatches.push(`${sent.requestId}: changes ${JSON.stringify(row.changes)}`);
        const note = (change?.fields['note'] as { to?: unknown } | undefined)?.to;
        if (note !== sent.note) mismatches.push(`${sent.requestId}: note ${String(note)}`);
      }
      for (const row of ran) {
        const job = jobs.find((j) => j.requestId === row.requestId);
        if (!job || row.actorId !== job.id || row.targetId !== job.id || row.source !== 'job') {
          mismatches.push(`job row ${row.requestId}: actor ${row.actorId}, target ${row.targetId}, source ${row.source}`);
        }
      }
      expect(mismatches).toEqual([]);
      expect(byRequest.size).toBe(0);
    },
    60_000,
  );
});
