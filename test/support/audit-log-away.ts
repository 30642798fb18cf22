import type { DataSource } from 'typeorm';
import type { TestDatabase } from './test-database.js';

/**
 * Puts `audit_log` under another name (`away`: every store of events fails as with a
 * database that refuses them) or back under its own; the domain tables are untouched.
 */
export async function moveAuditLog(dataSource: DataSource, db: TestDatabase, away: boolean): Promise<void> {
  const [from, to] = away ? ['audit_log', 'audit_log_away'] : ['audit_log_away', 'audit_log'];
  const schema = 'schema' in db.options ? db.options.schema : undefined;
  await dataSource.query(
    db.kind === 'mariadb' ? `RENAME TABLE \`${from}\` TO \`${to}\`` : `ALTER TABLE ${schema ? `"${schema}".` : ''}"${from}" RENAME TO "${to}"`,
  );
}
