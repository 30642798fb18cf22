import { beforeEach, describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { CommitPointSteps } from '../app/commit-point-steps.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// PostgreSQL's `PREPARE TRANSACTION 'id'` ends the session's transaction: prepared for a
// later `COMMIT PREPARED`, or — when it fails for any reason, as it does on a server with
// `max_prepared_transactions = 0` (the default) — rolled back. Either way the session is
// then in no transaction: TypeORM's later COMMIT only warns.
describe.each(databases().filter((kind) => kind === 'postgres'))('PREPARE TRANSACTION sent by hand in a TypeORM transaction on %s', (kind) => {
  let t!: TestApp;
  let disabled = false;
  const request = commitPointApp(kind, 'prepare', async (app) => {
    t = app;
    const [setting] = (await t.dataSource.query('SHOW max_prepared_transactions')) as Array<{ max_prepared_transactions: string }>;
    disabled = setting?.max_prepared_transactions === '0';
  });
  beforeEach(async ({ skip }) => {
    // A server that prepares transactions would keep them (and their locks) past the test.
    if (!disabled) skip();
  });

  const refused = (failed: string[]) => expect(failed).toEqual([expect.stringContaining('prepared transactions are disabled')]);

  it('refused, then commitTransaction(): the server rolled the transaction back, and its insert is in no record', async () => {
    const { requestId, failed } = await request(['start', 'save:a', `try:PREPARE TRANSACTION 'audit-p1'`, 'commit']);
    refused(failed);
    expect(await storedNotes(t.dataSource)).toEqual([]);
    await expectRecordedOnce(() => t.rows(), [t.dataSource], []);
    expect((await t.rows()).map((row) => [row.action, row.outcome, row.requestId, row.changes ?? []])).toEqual([['orders.stepped', 'success', requestId, []]]);
  });

  it('refused, a save after it (autocommitted: no transaction is open), then commitTransaction(): only that insert is recorded, once', async () => {
    const { requestId, failed } = await request(['start', 'save:a', `try:prepare transaction 'audit-p2'`, 'save:b', 'commit']);
    refused(failed);
    expect(await storedNotes(t.dataSource)).toEqual(['b']);
    const [insert] = await expectRecordedOnce(() => t.rows(), [t.dataSource], ['b']);
    expect([insert!.row.action, insert!.row.actorId, insert!.row.requestId]).toEqual(['orders.stepped', '1', requestId]);
  });

  it('refused, then rollbackTransaction(): nothing is recorded', async () => {
    const { failed } = await request(['start', 'save:a', `try:PREPARE TRANSACTION 'audit-p3'`, 'rollback']);
    refused(failed);
    expect(await storedNotes(t.dataSource)).toEqual([]);
    await expectRecordedOnce(() => t.rows(), [t.dataSource], []);
  });

  it('outside a unit of work, refused, then commitTransaction(): neither the insert nor the log() event is recorded', async () => {
    const { failed } = await t.app.get(CommitPointSteps).run(['start', 'save:a', 'log:a', `try:PREPARE TRANSACTION 'audit-p4'`, 'commit']);
    refused(failed);
    expect(await storedNotes(t.dataSource)).toEqual([]);
    await expectRecordedOnce(() => t.rows(), [t.dataSource], []);
    expect(await t.rows()).toEqual([]);
  });
});
