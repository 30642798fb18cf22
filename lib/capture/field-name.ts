import type { EntityMetadata } from 'typeorm';

type ColumnMetadata = EntityMetadata['columns'][number];

/** A join column TypeORM derives from a to-one relation (no property of its own). */
export const isDerivedJoinColumn = (column: ColumnMetadata): boolean => column.isVirtual && column.relationMetadata !== undefined;

/** The field name of a column: its property path; a derived join column reads as its relation. */
export function fieldName(column: ColumnMetadata): string {
  const relation = column.relationMetadata;
  if (relation && isDerivedJoinColumn(column)) {
    return relation.joinColumns.length > 1
      ? `${relation.propertyPath}.${column.referencedColumn?.propertyName ?? column.databaseName}`
      : relation.propertyPath;
  }
  return column.propertyPath;
}
