import { Table, TableIndex, type ColumnType, type QueryRunner } from 'typeorm';

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
  await queryRunner.createTable(
    new Table({
      name: prefixed(queryRunner, name),
      columns: columns.map((column) => ({
        name: column.name,
        type: driver.normalizeType({ type: column.type, length: column.length, precision: column.precision }),
        length: column.length === undefined ? undefined : String(column.length),
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
 * Creates `index` on `table` unless an index (or unique constraint) of that name is there:
 * a schema `synchronize` made before the migrations were adopted has most of them already.
 */
export async function createIndexIfMissing(queryRunner: QueryRunner, table: string, index: TableIndex): Promise<void> {
  const found = await queryRunner.getTable(table);
  if (found?.indices.some((existing) => existing.name === index.name) || found?.uniques.some((existing) => existing.name === index.name)) return;
  await queryRunner.createIndex(table, index);
}
