import type { DataSource } from 'typeorm';
import { AuditJournalEntity } from '../../lib/index.js';
import { MYSQL_DRIVERS, isSqlite } from '../../lib/storage/drivers.js';
import { escapedTable } from '../../lib/storage/sql.js';

/**
 * A trigger `name` that refuses every journal row whose entry mentions "poison", with the
 * message 'journal refused' (PostgreSQL, MySQL/MariaDB, SQLite). Returns the journal
 * table's escaped name.
 */
export async function refusePoisonedJournalRows(dataSource: DataSource, name: string): Promise<string> {
  const journal = escapedTable(dataSource, dataSource.getMetadata(AuditJournalEntity));
  if (isSqlite(dataSource)) {
    await dataSource.query(`CREATE TRIGGER ${name} BEFORE INSERT ON ${journal} FOR EACH ROW WHEN NEW.entry LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'journal refused'); END`);
  } else if (MYSQL_DRIVERS.has(String(dataSource.driver.options.type))) {
    await dataSource.query(
      `CREATE TRIGGER ${name} BEFORE INSERT ON ${journal} FOR EACH ROW BEGIN IF NEW.entry LIKE '%poison%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'journal refused'; END IF; END`,
    );
  } else {
    const fn = journal.replace(/"audit_journal"$/, `"${name}"`);
    await dataSource.query(
      `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.entry::text LIKE '%poison%' THEN RAISE EXCEPTION 'journal refused'; END IF; RETURN NEW; END $$`,
    );
    await dataSource.query(`CREATE TRIGGER ${name} BEFORE INSERT ON ${journal} FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
  }
  return journal;
}
