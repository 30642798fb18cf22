import { vi } from 'vitest';

// Before anything else loads: the process runs in Tokyo (UTC+9, no daylight saving).
vi.hoisted(() => {
  process.env['TZ'] = 'Asia/Tokyo';
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, withPostgresSettings, type TestDatabase } from '../support/test-database.js';
import { RecSController, RecSItem, RecSNestedWriter, RVB_ENTITIES } from './record-scenario-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(databases())('scenario: process TZ=Asia/Tokyo on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    expect(new Date(0).getTimezoneOffset()).toBe(-540);
    db = await createTestDatabase(kind);
    // A database session in yet another zone.
    if (kind === 'postgres') withPostgresSettings(db, '-c timezone=America/Los_Angeles');
    t = await createTestApp({ db, adapter: 'express', entities: RVB_ENTITIES, controllers: [RecSController], providers: [RecSNestedWriter] });
    await t.clearAudit();
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('occurredAt is the right UTC instant, read back through the entity, find() and raw SQL', async () => {
    const before = Date.now();
    const response = await t.request('/recs/items', { method: 'POST', json: { note: 'tokyo' }, headers: { 'x-recs-user': '1' } });
    expect(response.status).toBe(201);
    const after = Date.now();
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const at = rows[0]!.occurredAt.getTime();
    expect(at).toBeGreaterThanOrEqual(before - 5);
    expect(at).toBeLessThanOrEqual(after + 5);

    const page = await t.audit.find({ action: 'recs.created' });
    expect(page.items).toHaveLength(1);
    expect(new Date(page.items[0]!.occurredAt).getTime()).toBe(at);

    // The stored value, read without TypeORM's conversions, is the same UTC instant.
    const [raw] =
      kind === 'postgres'
        ? await t.dataSource.query(`SELECT extract(epoch from occurred_at) * 1000 AS ms FROM "${(db.options as { schema: string }).schema}".audit_log`)
        : kind === 'mariadb'
          ? await t.dataSource.query(`SELECT DATE_FORMAT(occurred_at, '%Y-%m-%dT%H:%i:%s.%f') AS txt FROM audit_log`)
          : await t.dataSource.query(`SELECT occurred_at AS txt FROM audit_log`);
    const rawMs = kind === 'postgres' ? Number((raw as { ms: string }).ms) : Date.parse(`${String((raw as { txt: string }).txt).replace(' ', 'T').slice(0, 23)}Z`);
    expect(Math.abs(rawMs - at)).toBeLessThan(2);
  });

  it('find() orders newest first and its from/to window finds each event at its instant', async () => {
    await t.clearAudit();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      ids.push(await t.audit.log({ action: 'recs.ticked', target: { type: 'RecSItem', id: String(i) } }));
      await sleep(15);
    }
    const page = await t.audit.find({ action: 'recs.ticked' });
    expect(page.items.map((item) => item.id)).toEqual([...ids].reverse());
    for (const item of page.items) {
      const instant = new Date(item.occurredAt).getTime();
      const windowed = await t.audit.find({ action: 'recs.ticked', from: new Date(instant), to: new Date(instant + 1) });
      expect(windowed.items.map((found) => found.id)).toEqual([item.id]);
      const asText = await t.audit.find({ action: 'recs.ticked', from: new Date(instant).toISOString(), to: new Date(instant + 1).toISOString() });
      expect(asText.items.map((found) => found.id)).toEqual([item.id]);
    }
    // The last hour, in UTC, holds them all.
    const hour = await t.audit.find({ action: 'recs.ticked', from: new Date(Date.now() - 3_600_000) });
    expect(hour.items).toHaveLength(4);
  });

  it('a change made in a request and the entity’s own timestamps are unaffected', async () => {
    await t.clearAudit();
    const before = Date.now();
    await t.dataSource.getRepository(RecSItem).save({ note: 'tokyo-fallback' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(Math.abs(rows[0]!.occurredAt.getTime() - before)).toBeLessThan(5_000);
  });
});
