import type { DataSource } from 'typeorm';
import { AuditJournalEntity } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';

/**
 * PostgreSQL: a trigger `name` that refuses every journal row whose entry mentions
 * "poison" ('journal refused'). Returns the journal table's escaped name.
 */
export async function refusePoisonedJournalRows(dataSource: DataSource, name: string): Promise<string> {
  const journal = escapedTable(dataSource, dataSource.getMetadata(AuditJournalEntity));
  const fn = journal.replace(/"audit_journal"$/, `"${name}"`);
  await dataSource.query(
    `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.entry::text LIKE '%poison%' THEN RAISE EXCEPTION 'journal refused'; END IF; RETURN NEW; END $$`,
  );
  await dataSource.query(`CREATE TRIGGER ${name} BEFORE INSERT ON ${journal} FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
  return journal;
}
