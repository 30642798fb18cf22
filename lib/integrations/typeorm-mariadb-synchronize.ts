import { Logger } from '@nestjs/common';
import { DataSource, type EntityMetadata } from 'typeorm';
import { AuditEntities } from '../storage/audit-entities.js';

/**
 * Patches: `DataSource.prototype.synchronize` (TypeORM), installed once per process by
 * `AuditModule.forRoot()` / `forRootAsync()`, so before the app's data sources initialize
 * (their `synchronize: true` runs inside `initialize()`).
 *
 * Why: TypeORM's `mysql` driver, connected to a MariaDB server, reads the schema as MySQL
 * would have it: each nullable column's default comes back as the text `NULL`, and each
 * `json` column as `longtext`. Its `synchronize` then sees every nullable column of the
 * audit tables as changed and drops and re-adds the JSON ones (`changes`, `context`,
 * `error`): on every start of the app, each stored event lost its changes, and `verify()`
 * found every event modified. (The `mariadb` driver reads MariaDB's schema right; so do
 * migrations.) For a data source of type `mysql` on MariaDB, the patched `synchronize`
 * runs in two passes: the app's tables as TypeORM would (the module's left out), then the
 * module's tables alone, read as the `mariadb` driver reads them (the driver's type is
 * `mariadb` for that pass), so that they change only as they would under type `mariadb`:
 * a column or index a newer version of the module adds is created, the stored values stay.
 * It logs what it did and how to avoid it. An app that calls `synchronize()` while it serves queries sees the
 * driver's type as `mariadb` for the module's pass.
 *
 * Relies on: `synchronize()` building the schema from `entityMetadatas`, skipping those whose
 * `synchronize` is false, and the MySQL driver and query runner reading `options.type` when
 * they read and compare the schema (true of TypeORM 0.3 and 1). Tested with TypeORM 0.3.31 and 1.1
 * (`test/unit/integrations.spec.ts` fails when `synchronize` or an entity's `synchronize`
 * flag is gone; `test/e2e/mariadb-mysql-driver.e2e.spec.ts` proves the events kept).
 */
type Synchronize = ((this: DataSource, dropBeforeSync?: boolean) => Promise<void>) & { [PATCHED]?: true };

const PATCHED = Symbol.for('nestjs-system-audit:mariadb-synchronize');
const logger = new Logger('AuditModule');

/** Installs the patch (once per process; later calls do nothing). */
export function keepAuditTablesOnMariaDbThroughMysqlDriver(): void {
  const prototype = DataSource.prototype as unknown as { synchronize: Synchronize };
  const original = prototype.synchronize;
  if (typeof original !== 'function') {
    throw new Error('nestjs-system-audit: TypeORM DataSource.prototype.synchronize not found; this TypeORM version is not supported');
  }
  if (original[PATCHED]) return;
  const patched: Synchronize = async function (this: DataSource, dropBeforeSync?: boolean) {
    const audit = dropBeforeSync ? [] : await auditTablesOnMariaDbThroughMysql(this);
    if (audit.length === 0) return original.call(this, dropBeforeSync);
    logger.warn(
      `The data source ${JSON.stringify((this.options as { name?: string }).name ?? 'default')} reaches MariaDB with type 'mysql': ` +
        `TypeORM's synchronize reads MariaDB's schema as MySQL's, and would drop and re-add columns of the audit tables (their data lost) on every start. ` +
        `The module synchronizes ${audit.map((metadata) => metadata.tableName).join(', ')} as type 'mariadb' would. ` +
        `Use type: 'mariadb' for this data source: the app's own tables are synchronized as type 'mysql' reads them.`,
    );
    const others = this.entityMetadatas.filter((metadata) => metadata.synchronize && !audit.includes(metadata));
    await withoutSynchronizing(audit, () => original.call(this, dropBeforeSync));
    const options = this.driver.options as { type: string };
    await withoutSynchronizing(others, async () => {
      options.type = 'mariadb';
      try {
        await original.call(this, false);
      } finally {
        options.type = 'mysql';
      }
    });
  };
  patched[PATCHED] = true;
  prototype.synchronize = patched;
}

/** Runs `work` with `metadatas` left out of synchronize, then puts their flag back. */
async function withoutSynchronizing(metadatas: readonly EntityMetadata[], work: () => Promise<void>): Promise<void> {
  for (const metadata of metadatas) metadata.synchronize = false;
  try {
    await work();
  } finally {
    for (const metadata of metadatas) metadata.synchronize = true;
  }
}

/** The metadata of the module's tables, when `dataSource` is of type `mysql` and its server is MariaDB. */
async function auditTablesOnMariaDbThroughMysql(dataSource: DataSource): Promise<EntityMetadata[]> {
  if (dataSource.options.type !== 'mysql' || !dataSource.isInitialized) return [];
  const audit = dataSource.entityMetadatas.filter((metadata) => metadata.synchronize && (AuditEntities as readonly unknown[]).includes(metadata.target));
  if (audit.length === 0) return [];
  const [row] = (await dataSource.query('SELECT VERSION() AS version')) as Array<{ version?: unknown }>;
  return /mariadb/i.test(String(row?.version ?? '')) ? audit : [];
}
