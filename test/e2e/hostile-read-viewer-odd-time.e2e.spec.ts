// A row whose occurred_at is not a time (inserted by hand: SQLite keeps any text, MariaDB
// takes the zero date '0000-00-00' under its default sql_mode) is shown by the viewer as
// such, on the search page, the event page and the timeline, instead of failing the page
// with a 500 (which would hide every other event of that search).
import { randomUUID } from 'node:crypto';
import { Injectable, type CanActivate } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditViewerModule } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Injectable()
class LetThrough implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/** What each database lets a hand-made INSERT put in occurred_at that is no time. */
const NOT_A_TIME: Partial<Record<string, string>> = { sqlite: 'not a time', mariadb: '0000-00-00 00:00:00.000' };

describe.each(databases().filter((kind) => NOT_A_TIME[kind] !== undefined))('the viewer and an event whose time is not one on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  const odd = randomUUID();
  let good: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', imports: [AuditViewerModule.register({ path: '/audit', guard: LetThrough })] });
    good = await t.audit.log({ action: 'doc.timed', target: { type: 'doc', id: '5' }, reason: 'a good one' });
    const escape = (name: string): string => t.dataSource.driver.escape(name);
    const columns = ['id', 'occurred_at', 'action', 'outcome', 'kind', 'actor_type', 'source', 'target_type', 'target_id', 'reason'];
    await t.dataSource.query(
      `INSERT INTO ${escapedTable(t.dataSource, t.dataSource.getMetadata(AuditLogEntity))} (${columns.map(escape).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
      [odd, NOT_A_TIME[kind], 'doc.timed', 'success', 'intent', 'user', 'http', 'doc', '5', 'an odd one'],
    );
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('lists it on the search page beside the others', async () => {
    const response = await t.request('/audit?action=doc.timed');
    const page = await response.text();
    expect(response.status).toBe(200);
    expect(page).toContain(`/audit/events/${odd}`);
    expect(page).toContain(`/audit/events/${good}`);
    expect(page).toContain('not a valid time');
  });

  it('shows it on its event page', async () => {
    const response = await t.request(`/audit/events/${odd}`);
    const page = await response.text();
    expect(response.status).toBe(200);
    expect(page).toContain('an odd one');
    expect(page).toContain('not a valid time');
  });

  it("shows it in its target's timeline", async () => {
    const response = await t.request('/audit/timeline?type=doc&id=5');
    const page = await response.text();
    expect(response.status).toBe(200);
    expect(page).toContain('an odd one');
    expect(page).toContain('a good one');
  });
});
