import { describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// MariaDB runs COMMIT as a prepared statement (`PREPARE s FROM 'COMMIT'` then `EXECUTE s`,
// or `EXECUTE IMMEDIATE 'COMMIT'`): a commit point sent by hand like a plain COMMIT. Not
// followed (docs/capture-rules.md, "Not seen"): the test is kept as an expected failure, so
// that it says so when the module learns it.
describe.each(databases().filter((kind) => kind === 'mariadb'))('a COMMIT run as a prepared statement on %s', (kind) => {
  let t!: TestApp;
  const request = commitPointApp(kind, 'execute-commit', (app) => {
    t = app;
  });


  it.fails.each([[['sql:EXECUTE IMMEDIATE \'COMMIT\'']], [['sql:PREPARE c FROM \'COMMIT\'', 'sql:EXECUTE c', 'sql:DEALLOCATE PREPARE c']]])(
    '%j, then rollbackTransaction(): the committed insert is recorded once',
    async (commit) => {
      const { requestId } = await request(['start', 'save:a', ...commit, 'try-rollback']);
      expect(await storedNotes(t.dataSource)).toEqual(['a']);
      const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], ['a']);
      expect(inserts.map((insert) => insert.row.requestId)).toEqual([requestId]);
    },
  );
});
