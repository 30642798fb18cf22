import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { OrderArchiver } from '../app/jobs.js';
import { Order } from '../app/order.entity.js';
import { NoteSweeper, SCOPED_NOTE_PROVIDERS, ScopedNotesController } from '../app/scoped-notes.js';
import { createTestDatabase } from '../support/test-database.js';

/**
 * Two Nest apps in one process (a worker app next to the HTTP app, parallel
 * e2e apps) that share an `@Audited` transient provider class.
 */
describe('hostile: a scoped provider shared by two apps in one process', () => {
  const apps: TestApp[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close().catch(() => undefined)));
  });

  const boot = async () => {
    const t = await createTestApp({ db: await createTestDatabase('sqlite'), adapter: 'express', controllers: [ScopedNotesController], providers: [...SCOPED_NOTE_PROVIDERS, OrderArchiver] });
    apps.push(t);
    return t;
  };

  it('a job of app A calling its transient @Audited provider is recorded in app A, not in app B', async () => {
    const a = await boot();
    const b = await boot(); // registered last
    const order = await a.seed(() => a.dataSource.getRepository(Order).save({ status: 'new' }));
    await b.clearAudit();

    await a.app.get(NoteSweeper).sweep(order.id);
    await new Promise((resolve) => setTimeout(resolve, 200));

    const rowsA = await a.rows();
    const rowsB = await b.rows();
    // Expected: A's own intent row with the change A made; nothing in B.
    expect({ a: rowsA.map((row) => [row.kind, row.action, row.changes?.length]), b: rowsB.map((row) => [row.kind, row.action, row.changes?.length]) }).toEqual({
      a: [['intent', 'note.transient', 1]],
      b: [],
    });
  });

  it('a singleton @Audited method called after its app closed settles (does not hang)', async () => {
    const a = await boot();
    const order = await a.seed(() => a.dataSource.getRepository(Order).save({ status: 'new' }));
    const archiver = a.app.get(OrderArchiver);
    apps.splice(apps.indexOf(a), 1);
    await a.close();
    const settled = await Promise.race([
      archiver.archive(order.id).then(
        () => 'resolved',
        (error: Error) => `rejected: ${error.message}`,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still pending after 3 s'), 3000)),
    ]);
    expect(settled).not.toBe('still pending after 3 s');
  });
});
