import { Table, TableIndex, type ColumnType, type QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE } from '../../audit.constants.js';

/** A column in the entity's portable types; each driver maps it exactly as it maps the entity. */
export interface ColumnSpec {
  name: string;
  type: ColumnType;
  length?: number;
  precision?: number;
  nullable?: boolean;
  primary?: boolean;
}

/** `name` with the data source's `entityPrefix`, as the entity gets it. */
export const prefixed = (queryRunner: QueryRunner, name: string): string =>
  `${queryRunner.connection.options.entityPrefix ?? ''}${name}`;

/** Creates a table from portable column specs and indexes, on PostgreSQL, MySQL/MariaDB or SQLite. */
export async function createPortableTable(
  queryRunner: QueryRunner,
  name: string,
  columns: readonly ColumnSpec[],
  indexes: ReadonlyArray<[string, string[]]>,
): Promise<void> {
  const driver = queryRunner.connection.driver;
  const uuidAs = columns.some((column) => column.type === 'uuid') ? await existingUuidType(queryRunner) : undefined;
  await queryRunner.createTable(
    new Table({
      name: prefixed(queryRunner, name),
      columns: columns.map((column) => ({
        name: column.name,
        type: column.type === 'uuid' && uuidAs ? uuidAs.type : driver.normalizeType({ type: column.type, length: column.length, precision: column.precision }),
        length: column.type === 'uuid' && uuidAs ? uuidAs.length : column.length === undefined ? undefined : String(column.length),
        precision: column.precision,
        isNullable: column.nullable ?? false,
        isPrimary: column.primary ?? false,
      })),
      indices: indexes.map(([indexName, columnNames]) => new TableIndex({ name: indexName, columnNames })),
    }),
    true,
  );
}

/**
 * On MySQL/MariaDB, the type `audit_log.id` has (native `uuid`, or text), when the table is
 * there: a table created later gives its uuid columns the same, whichever type (`mysql` or
 * `mariadb`) the data source has now, so the module's uuid columns keep one representation.
 */
async function existingUuidType(queryRunner: QueryRunner): Promise<{ type: string; length?: string } | undefined> {
  const type = queryRunner.connection.options.type;
  if (type !== 'mysql' && type !== 'mariadb') return undefined;
  const [row] = (await queryRunner.query(
    'SELECT DATA_TYPE AS dataType, CHARACTER_MAXIMUM_LENGTH AS length FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?',
    [prefixed(queryRunner, AUDIT_LOG_TABLE), 'id'],
  )) as Array<{ dataType: string; length: number | string | null }>;
  if (!row) return undefined;
  const dataType = String(row.dataType).toLowerCase();
  return dataType === 'uuid' ? { type: 'uuid' } : { type: dataType, length: String(row.length ?? 255) };
}

/**
 * Creates `index` on `table` unless an index (or unique constraint) of that name is there:
 * a schema `synchronize` made before the migrations were adopted has most of them already.
 */
export async function createIndexIfMissing(queryRunner: QueryRunner, table: string, index: TableIndex): Promise<void> {
  const found = await queryRunner.getTable(table);
  if (found?.indices.some((existing) => existing.name === index.name) || found?.uniques.some((existing) => existing.name === index.name)) return;
  await queryRunner.createIndex(table, index);
}
