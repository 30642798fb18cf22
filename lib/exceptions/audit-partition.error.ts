/**
 * Thrown by `partitionAuditLog()`, `unpartitionAuditLog()` and `createAuditPartitions()`
 * when the monthly partitions of `audit_log` cannot be set up as asked: a database other
 * than PostgreSQL 13 or later, a table missing or in the wrong layout, a unique index the
 * partitioned table cannot keep, or a bad option.
 */
export class AuditPartitionError extends Error {
  constructor(message: string) {
    super(`Audit partitions: ${message}`);
    this.name = 'AuditPartitionError';
  }
}
