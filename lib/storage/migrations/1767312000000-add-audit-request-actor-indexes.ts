import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE } from '../../audit.constants.js';
import { prefixed } from './portable-table.js';

/** The indexes this migration adds to `audit_log`, columns in index order. */
export const AUDIT_REQUEST_ACTOR_INDEXES: ReadonlyArray<readonly [name: string, columns: readonly string[]]> = [
  ['idx_audit_log_request', ['request_id', 'occurred_at', 'id']],
  ['idx_audit_log_actor_id', ['actor_id', 'occurred_at', 'id']],
];

/**
 * Indexes `audit_log` by request id and by actor id alone, each ending with
 * `(occurred_at, id)` as `find()` pages: `find({ requestId })` (the viewer links every
 * event to its request's) and `find({ actorId })` without `actorType` read a page from
 * an index instead of the whole table. An index that already exists under its name
 * (built beforehand, e.g. `CREATE INDEX CONCURRENTLY` on a large PostgreSQL table) is kept.
 */
export class AddAuditRequestActorIndexes1767312000000 implements MigrationInterface {
  name = 'AddAuditRequestActorIndexes1767312000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const name = prefixed(queryRunner, AUDIT_LOG_TABLE);
    const table = await queryRunner.getTable(name);
    if (!table) throw new Error(`table ${name} does not exist: run the migrations before AddAuditRequestActorIndexes1767312000000`);
    for (const [indexName, columns] of AUDIT_REQUEST_ACTOR_INDEXES) {
      if (table.indices.some((index) => index.name === indexName)) continue;
      await queryRunner.createIndex(table, new TableIndex({ name: indexName, columnNames: [...columns] }));
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const name = prefixed(queryRunner, AUDIT_LOG_TABLE);
    for (const [indexName] of [...AUDIT_REQUEST_ACTOR_INDEXES].reverse()) await queryRunner.dropIndex(name, indexName);
  }
}
