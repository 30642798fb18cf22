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
 * The module's tables also keep the representation their uuid columns were created with.
 * TypeORM's driver maps an entity's `uuid` column to MariaDB's native `uuid` type only
 * for type `mariadb` on MariaDB 10.7+ (a flag the driver sets when it connects), and to
 * `varchar(255)` for type `mysql` (and migrations map it with the driver of the moment):
 * so tables made under one type, synchronized under the other, had their uuid columns
 * dropped and re-added, the primary key `audit_log.id` with them (start-up failed with a
 * duplicate key and `audit_log` was left without `id`). On MariaDB, with either type, the
 * module's tables are synchronized in a pass of their own in which each uuid column of
 * the entities is given the representation the table has (read from
 * `information_schema.COLUMNS`): native `uuid` where the column is native, its text type
 * where it is text. A column not there yet takes the representation of the module's other
 * uuid columns, or, on a database without any, the data source type's own. The metadata
 * and the driver's flag are put back after the pass.
 *
 * Relies on: `synchronize()` building the schema from `entityMetadatas`, skipping those whose
 * `synchronize` is false, the MySQL driver and query runner reading `options.type` when
 * they read and compare the schema, and the driver mapping a column's type through
 * `normalizeType()` at synchronize time, `uuid` to native `uuid` only while its
 * `uuidColumnTypeSuported` flag is true (true of TypeORM 0.3 and 1). Tested with TypeORM 0.3.31 and 1.1
 * (`test/unit/integrations.spec.ts` fails when `synchronize`, the driver's uuid flag or an entity's `synchronize`
 * flag is gone; `test/e2e/mariadb-mysql-driver.e2e.spec.ts` and `mariadb-driver-switch.e2e.spec.ts` prove the events kept).
 */
type Synchronize = ((this: DataSource, dropBeforeSync?: boolean) => Promise<void>) & { [PATCHED]?: true };

const PATCHED = Symbol.for('nestjs-system-audit:mariadb-synchronize');
const logger = new Logger('AuditModule');

/** The MySQL driver's fields this patch reads and sets for the module's pass. */
interface MysqlDriverState {
  options: { type: string };
  version?: string;
  uuidColumnTypeSuported?: boolean;
}

/** Installs the patch (once per process; later calls do nothing). */
export function keepAuditTablesOnMariaDbThroughMysqlDriver(): void {
  const prototype = DataSource.prototype as unknown as { synchronize: Synchronize };
  const original = prototype.synchronize;
  if (typeof original !== 'function') {
    throw new Error('nestjs-system-audit: TypeORM DataSource.prototype.synchronize not found; this TypeORM version is not supported');
  }
  if (original[PATCHED]) return;
  const patched: Synchronize = async function (this: DataSource, dropBeforeSync?: boolean) {
    const audit = dropBeforeSync ? [] : await auditTablesOnMariaDb(this);
    if (audit.length === 0) return original.call(this, dropBeforeSync);
    const type = this.options.type as 'mysql' | 'mariadb';
    if (type === 'mysql') {
      logger.warn(
        `The data source ${JSON.stringify((this.options as { name?: string }).name ?? 'default')} reaches MariaDB with type 'mysql': ` +
          `TypeORM's synchronize reads MariaDB's schema as MySQL's, and would drop and re-add columns of the audit tables (their data lost) on every start. ` +
          `The module synchronizes ${audit.map((metadata) => metadata.tableName).join(', ')} as type 'mariadb' would. ` +
          `Use type: 'mariadb' for this data source: the app's own tables are synchronized as type 'mysql' reads them.`,
      );
    }
    const others = this.entityMetadatas.filter((metadata) => metadata.synchronize && !audit.includes(metadata));
    await withoutSynchronizing(audit, () => original.call(this, dropBeforeSync));
    const driver = this.driver as unknown as MysqlDriverState;
    const nativeUuid = driver.uuidColumnTypeSuported;
    const overrides = await keepUuidRepresentation(this, audit, type === 'mariadb' ? Boolean(nativeUuid) : false);
    await withoutSynchronizing(others, async () => {
      driver.options.type = 'mariadb';
      driver.uuidColumnTypeSuported = supportsNativeUuid(driver.version);
      try {
        await original.call(this, false);
      } finally {
        driver.options.type = type;
        driver.uuidColumnTypeSuported = nativeUuid;
        overrides.restore();
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

/** MariaDB 10.7 and later have the native `uuid` type (TypeORM's `mariadb` driver uses it from there). */
function supportsNativeUuid(version: string | undefined): boolean {
  const [major = 0, minor = 0] = String(version ?? '')
    .split(/[.-]/)
    .map((part) => Number.parseInt(part, 10));
  return major > 10 || (major === 10 && minor >= 7);
}

/**
 * Gives each uuid column of the module's entities the representation its table has, for the
 * module's pass (run with the driver's native-uuid flag on where the server has the type):
 * a column stored as text is declared as that text type, so synchronize leaves it as it is.
 * Columns not in the database yet follow the module's other uuid columns; with none there,
 * `nativeByDefault` (the data source type's own mapping). `restore()` puts the metadata back.
 */
async function keepUuidRepresentation(dataSource: DataSource, audit: readonly EntityMetadata[], nativeByDefault: boolean): Promise<{ restore(): void }> {
  const columns = audit.flatMap((metadata) => metadata.columns.filter((column) => column.type === 'uuid').map((column) => ({ metadata, column })));
  if (columns.length === 0) return { restore: () => undefined };
  const current = (dataSource.driver as unknown as { database?: string }).database;
  const schemaOf = (metadata: EntityMetadata) => metadata.database ?? current ?? '';
  const rows = (await dataSource.query(
    `SELECT TABLE_SCHEMA AS tableSchema, TABLE_NAME AS tableName, COLUMN_NAME AS columnName, DATA_TYPE AS dataType, CHARACTER_MAXIMUM_LENGTH AS length
       FROM information_schema.COLUMNS WHERE TABLE_NAME IN (${audit.map(() => '?').join(', ')})`,
    audit.map((metadata) => metadata.tableName),
  )) as Array<{ tableSchema: string; tableName: string; columnName: string; dataType: string; length: number | string | null }>;
  const found = columns.map(({ metadata, column }) => ({
    column,
    row: rows.find((row) => row.tableSchema === schemaOf(metadata) && row.tableName === metadata.tableName && row.columnName === column.databaseName),
  }));
  const text = found.find(({ row }) => row && String(row.dataType).toLowerCase() !== 'uuid')?.row;
  const native = found.some(({ row }) => row && String(row.dataType).toLowerCase() === 'uuid');
  const fallback = text ? { type: String(text.dataType).toLowerCase(), length: String(text.length ?? 255) } : native || nativeByDefault ? undefined : { type: 'varchar', length: '255' };
  const saved: Array<{ column: (typeof columns)[number]['column']; type: unknown; length: string }> = [];
  for (const { column, row } of found) {
    const wanted = row ? (String(row.dataType).toLowerCase() === 'uuid' ? undefined : { type: String(row.dataType).toLowerCase(), length: String(row.length ?? 255) }) : fallback;
    if (!wanted) continue;
    saved.push({ column, type: column.type, length: column.length });
    column.type = wanted.type as typeof column.type;
    column.length = wanted.length;
  }
  return {
    restore: () => {
      for (const { column, type, length } of saved) {
        column.type = type as typeof column.type;
        column.length = length;
      }
    },
  };
}

/** The metadata of the module's tables, when `dataSource` is of type `mysql` or `mariadb` and its server is MariaDB. */
async function auditTablesOnMariaDb(dataSource: DataSource): Promise<EntityMetadata[]> {
  if ((dataSource.options.type !== 'mysql' && dataSource.options.type !== 'mariadb') || !dataSource.isInitialized) return [];
  const audit = dataSource.entityMetadatas.filter((metadata) => metadata.synchronize && (AuditEntities as readonly unknown[]).includes(metadata.target));
  if (audit.length === 0) return [];
  const [row] = (await dataSource.query('SELECT VERSION() AS version')) as Array<{ version?: unknown }>;
  return /mariadb/i.test(String(row?.version ?? '')) ? audit : [];
}
