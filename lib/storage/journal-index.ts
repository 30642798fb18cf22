import type { DataSource } from 'typeorm';
import { AuditJournalEntity } from './audit-journal.entity.js';
import { driverErrorCode } from './database-errors.js';
import { escapedTable } from './sql.js';
import { MYSQL_DRIVERS } from './drivers.js';


/**
 * MySQL/MariaDB: the journal's index on the unit id, which the statements that lock or
 * delete units' journal rows name (`FORCE INDEX`), so that they touch those units' rows
 * only, whatever the journal's size. Without it the optimizer scans a small journal (the
 * usual: it holds the rows of units in flight), and a scanning locking read or DELETE
 * locks every row it reads, other transactions' rows too. Elsewhere, and where the table
 * has no such index (made by hand: see {@link drop}), the statements name none.
 */
export class JournalIndex {
  private name?: string;

  constructor(private readonly dataSource: DataSource) {
    if (!MYSQL_DRIVERS.has(String(dataSource.driver.options.type))) return;
    const journal = dataSource.getMetadata(AuditJournalEntity);
    const unit = journal.findColumnWithPropertyName('unitId');
    this.name = journal.indices.find((index) => index.columns.length === 1 && index.columns[0] === unit)?.name;
  }

  /** Whether the statements name the index. */
  get named(): boolean {
    return this.name !== undefined;
  }

  /** The journal table has no index of that name: the statements name none from now on. */
  drop(): void {
    this.name = undefined;
  }

  /** Whether `error` is the server's refusal of a statement naming the index, which the table lacks (then {@link drop} it). */
  refused(error: unknown): boolean {
    return this.named && driverErrorCode(error) === 'ER_KEY_DOES_NOT_EXITS';
  }

  /** ` FORCE INDEX (…)` after the journal table's name, or `''`. */
  hint(): string {
    return this.name ? ` FORCE INDEX (${this.dataSource.driver.escape(this.name)})` : '';
  }

  /**
   * The head of a DELETE of journal rows, up to its `WHERE` conditions, and how those name
   * a column: where the index is named, the multi-table form (`DELETE FROM j USING … AS j
   * FORCE INDEX (…) WHERE`, the only one that takes an index hint), its columns `j.…`.
   */
  deleteWhere(): { head: string; column: (propertyName: keyof AuditJournalEntity) => string } {
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const table = escapedTable(this.dataSource, metadata);
    const name = (propertyName: keyof AuditJournalEntity): string =>
      this.dataSource.driver.escape(metadata.findColumnWithPropertyName(propertyName)!.databaseName);
    return this.name
      ? { head: `DELETE FROM j USING ${table} AS j${this.hint()} WHERE `, column: (propertyName) => `j.${name(propertyName)}` }
      : { head: `DELETE FROM ${table} WHERE `, column: name };
  }
}
