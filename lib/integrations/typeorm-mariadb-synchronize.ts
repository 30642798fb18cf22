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
 * leaves out the module's tables that exist already (TypeORM still creates those that are
 * missing, and synchronizes every table of the app as before), and logs once per data
 * source what it did and how to avoid it.
 *
 * Relies on: `synchronize()` building the schema from `entityMetadatas`, skipping those whose
 * `synchronize` is false (true of TypeORM 0.3 and 1). Tested with TypeORM 0.3.31 and 1.1
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
    const kept = dropBeforeSync ? [] : await existingAuditTablesOnMariaDbThroughMysql(this);
    if (kept.length === 0) return original.call(this, dropBeforeSync);
    logger.warn(
      `The data source ${JSON.stringify((this.options as { name?: string }).name ?? 'default')} reaches MariaDB with type 'mysql': TypeORM's synchronize would drop and re-add ` +
        `the JSON columns of the audit tables (their data lost) on every start, as it reads MariaDB's schema as MySQL's. ` +
        `It leaves ${kept.map((metadata) => metadata.tableName).join(', ')} as they are. Use type: 'mariadb' for this data source ` +
        `(or run AuditMigrations) to keep them in step with this version of the module.`,
    );
    for (const metadata of kept) metadata.synchronize = false;
    try {
      return await original.call(this, dropBeforeSync);
    } finally {
      for (const metadata of kept) metadata.synchronize = true;
    }
  };
  patched[PATCHED] = true;
  prototype.synchronize = patched;
}

/** The metadata of the module's tables that exist already, when `dataSource` is of type `mysql` and its server is MariaDB. */
async function existingAuditTablesOnMariaDbThroughMysql(dataSource: DataSource): Promise<EntityMetadata[]> {
  if (dataSource.options.type !== 'mysql' || !dataSource.isInitialized) return [];
  const audit = dataSource.entityMetadatas.filter((metadata) => metadata.synchronize && (AuditEntities as readonly unknown[]).includes(metadata.target));
  if (audit.length === 0) return [];
  const runner = dataSource.createQueryRunner();
  try {
    const [row] = (await runner.query('SELECT VERSION() AS version')) as Array<{ version?: unknown }>;
    if (!/mariadb/i.test(String(row?.version ?? ''))) return [];
    const kept: EntityMetadata[] = [];
    for (const metadata of audit) if (await runner.hasTable(metadata.tablePath)) kept.push(metadata);
    return kept;
  } finally {
    await runner.release();
  }
}
