import type { DataSource } from 'typeorm';
import { AuditLogEntity } from '../../lib/index.js';
import { withAuditPurge } from '../../lib/storage/append-only.js';
import { escapedTable } from '../../lib/storage/sql.js';

/**
 * Deletes every `audit_log` row. After `AuditMigrations` the table is append-only, so this
 * goes the retention purge's way (`withAuditPurge`); it works on a `synchronize` schema too.
 */
export async function clearAuditLog(dataSource: DataSource): Promise<void> {
  const runner = dataSource.createQueryRunner();
  try {
    await withAuditPurge(runner, (inside) => inside.query(`DELETE FROM ${escapedTable(dataSource, dataSource.getMetadata(AuditLogEntity))}`));
  } finally {
    await runner.release();
  }
}
