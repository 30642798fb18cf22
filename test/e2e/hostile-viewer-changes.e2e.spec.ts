// Explicit `changes` whose fields are not `{ from, to }` or `{ added: [...], removed: [...] }`
// (a field given as null, a number, text, or links that are not lists): log() threw a bare
// TypeError from deep inside the event builder instead of InvalidAuditEventError naming
// the field. And a row of audit_log holding such changes however it got there (an older
// version, a hand-made insert) made the viewer's event page and the target's timeline a
// 500, hiding the event, its integrity status and the rest of the timeline: each odd
// value is shown now, as stored and escaped.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditViewerModule, InvalidAuditEventError } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ALICE = { authorization: 'Bearer alice-token' };
const XSS = '<script>alert(1)</script>';
const ODD_FIELDS = { status: null, total: 5, note: XSS, tags: { added: XSS, removed: null } };

describe.each(databases())('changes of an odd shape on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let id: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })] });
    const logged = await t.audit.log({ action: 'order.imported', target: { type: 'order', id: '9' } });
    const repository = t.dataSource.getRepository(AuditLogEntity);
    const row = await repository.findOneByOrFail({ id: logged });
    id = randomUUID();
    await repository.insert({
      ...row,
      id,
      occurredAt: new Date(row.occurredAt.getTime() + 1),
      changes: [{ entity: 'Order', id: '9', operation: 'update', fields: ODD_FIELDS }, null, XSS],
    } as never);
    await t.audit.log({ action: 'order.checked', target: { type: 'order', id: '9' } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('log() refuses such changes with InvalidAuditEventError naming each field, and writes nothing', async () => {
    const before = (await t.rows()).length;
    const logged = t.audit.log({ action: 'order.imported', changes: [{ entity: 'Order', id: '9', operation: 'update', fields: ODD_FIELDS as never }] });
    await expect(logged).rejects.toBeInstanceOf(InvalidAuditEventError);
    const error = (await logged.catch((e: unknown) => e)) as InvalidAuditEventError;
    const fields = ['status', 'total', 'note', 'tags'].map((name) => `changes[0].fields.${name}`);
    expect(error.message).toContain(`${fields[0]} must be { from, to } or { added: [...], removed: [...] }`);
    for (const field of fields) expect(error.message).toContain(field);
    expect((await t.rows()).length).toBe(before);
    // The documented shapes are taken.
    await t.audit.log({ action: 'order.imported', changes: [{ entity: 'Order', id: '10', operation: 'update', fields: { status: { from: 'a', to: null }, tags: { added: ['1'], removed: [] } } }] });
  });

  it("the viewer shows a stored event with such changes, each odd value as stored", async () => {
    const response = await t.request(`/audit/events/${id}`, { headers: ALICE });
    expect(response.status).toBe(200);
    const page = await response.text();
    expect(page).toContain('<tr><td>status</td><td colspan="2" class="diff-to">stored as <code>null</code></td></tr>');
    expect(page).toContain('<tr><td>total</td><td colspan="2" class="diff-to">stored as <code>5</code></td></tr>');
    expect(page).toContain('<tr><td>note</td><td colspan="2" class="diff-to">stored as <code>&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;</code></td></tr>');
    expect(page).toContain('<tr><td>tags</td><td colspan="2" class="diff-to">stored as <code>{&quot;added&quot;:&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;,&quot;removed&quot;:null}</code></td></tr>');
    expect(page).toContain('<section class="change"><p class="muted">A change stored as <code>null</code></p></section>');
    expect(page).not.toContain(XSS);
    expect(page).toContain('<h2>Integrity</h2>');
  });

  it("the viewer shows the target's timeline: the odd event and the ones around it", async () => {
    const response = await t.request('/audit/timeline?type=order&id=9', { headers: ALICE });
    expect(response.status).toBe(200);
    const page = await response.text();
    expect(page.match(/<strong>order.imported<\/strong>/g)).toHaveLength(2);
    expect(page).toContain('<strong>order.checked</strong>');
    expect(page).not.toContain(XSS);
  });
});
