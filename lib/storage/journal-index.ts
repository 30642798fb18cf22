import type { DataSource } from 'typeorm';
import { AuditJournalEntity } from './audit-journal.entity.js';
import { driverErrorCode } from './database-errors.js';
import { escapedTable, valuesTable } from './sql.js';
import { MYSQL_DRIVERS } from './drivers.js';

/** Units per DELETE of {@link JournalIndex.unitDeletes}. */
const UNITS_PER_DELETE = 1000;


/**
 * MySQL/MariaDB: the journal's index on the unit id, which the statements that lock or
 * delete units' journal rows go through (`FORCE INDEX`; for several units, a join: see
 * {@link JournalIndex.unitsJoin}), so that they touch those units' rows only, whatever the
 * journal's size. Without it the optimizer scans a small journal (the usual: it holds the
 * rows of units in flight), and a scanning locking read or DELETE locks every row it
 * reads, other transactions' rows too. Elsewhere, and where the table
 * has no such index (made by hand: see {@link drop}), the statements name none.
 */
export class JournalIndex {
  private name?: string;
  /** The entity's name of the index, dropped or not: a refusal names it. */
  private readonly entityName?: string;
  private readonly mysql: boolean;

  constructor(private readonly dataSource: DataSource) {
    this.mysql = MYSQL_DRIVERS.has(String(dataSource.driver.options.type));
    if (!this.mysql) return;
    const journal = dataSource.getMetadata(AuditJournalEntity);
    const unit = journal.findColumnWithPropertyName('unitId');
    this.name = this.entityName = journal.indices.find((index) => index.columns.length === 1 && index.columns[0] === unit)?.name;
  }

  /** Whether the statements name the index. */
  get named(): boolean {
    return this.name !== undefined;
  }

  /** The journal table has no index of that name: the statements name none from now on. */
  drop(): void {
    this.name = undefined;
  }

  /**
   * Whether `error` is the server's refusal of a statement naming the index, which the table
   * lacks (then {@link drop} it). Also once dropped: statements made before, running at the
   * same time as the one whose refusal dropped it, are refused too (one made again names
   * none, and is not refused again).
   */
  refused(error: unknown): boolean {
    return this.entityName !== undefined && driverErrorCode(error) === 'ER_KEY_DOES_NOT_EXITS' && (error as Error).message.includes(`'${this.entityName}'`);
  }

  /** ` FORCE INDEX (…)` after the journal table's name, or `''`. */
  hint(): string {
    return this.name ? ` FORCE INDEX (${this.dataSource.driver.escape(this.name)})` : '';
  }

  /**
   * MySQL/MariaDB: the tables of a `FROM` clause that give the journal rows of `count` unit
   * ids (`?` parameters, in order) as `j`: the ids as a derived table `k`, joined in that
   * order (`STRAIGHT_JOIN`) to the journal through the unit id index, one lookup per unit.
   * `j.unit_id IN (…)` was not enough, index hint or not: the journal holds the rows of the
   * units in flight, so one batch's units are often most of its rows, and the optimizer
   * then reads the statement as a scan of the whole table — which, locking or deleting,
   * locks every row it reads, other batches' rows too (two batches each held their own rows
   * and waited for the other's: a deadlock).
   */
  unitsJoin(count: number): string {
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const table = escapedTable(this.dataSource, metadata);
    const unit = this.dataSource.driver.escape(metadata.findColumnWithPropertyName('unitId')!.databaseName);
    return `${valuesTable(count, ['u'], 'k')} STRAIGHT_JOIN ${table} AS j${this.hint()} ON j.${unit} = k.u`;
  }

  /** The DELETEs of the journal rows of `unitIds` (on MySQL/MariaDB through {@link unitsJoin}), a thousand units each. */
  unitDeletes(unitIds: readonly string[]): Array<{ sql: string; params: string[] }> {
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const driver = this.dataSource.driver;
    const unit = driver.escape(metadata.findColumnWithPropertyName('unitId')!.databaseName);
    const statements: Array<{ sql: string; params: string[] }> = [];
    for (let start = 0; start < unitIds.length; start += UNITS_PER_DELETE) {
      const params = unitIds.slice(start, start + UNITS_PER_DELETE);
      const sql = this.mysql
        ? `DELETE j FROM ${this.unitsJoin(params.length)}`
        : `DELETE FROM ${escapedTable(this.dataSource, metadata)} WHERE ${unit} IN (${params.map((_, index) => driver.createParameter(`u${index}`, index)).join(', ')})`;
      statements.push({ sql, params });
    }
    return statements;
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
