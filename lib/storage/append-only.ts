import type { QueryRunner } from 'typeorm';
import { AUDIT_CHECKPOINT_TABLE, AUDIT_LOG_TABLE, AUDIT_TREE_TABLE } from '../audit.constants.js';
import { prefixed } from './migrations/portable-table.js';
import { MYSQL_DRIVERS, SQLITE_DRIVERS } from './drivers.js';

/**
 * The append-only guards of `audit_log`, `audit_tree` and `audit_checkpoint`: database
 * triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), built here for the
 * migration that creates them and for {@link withAuditPurge}, the one path that may delete.
 *
 * - `audit_log` lets one UPDATE through: setting a NULL `seq` with every other column
 *   unchanged (the integrator sequencing an event). An UPDATE that changes nothing at all
 *   passes too (MySQL/MariaDB fire the UPDATE trigger for `INSERT … ON DUPLICATE KEY UPDATE
 *   id = id`, the writer's idempotent re-store of an event).
 * - DELETE is allowed inside {@link withAuditPurge} only; UPDATE never is.
 *
 * The guard keeps the application (and its bugs) from rewriting the audit trail; it does
 * not stop a database administrator, who can drop the triggers. Tamper evidence (the
 * Merkle tree and its signed checkpoints) covers that case.
 */

type Dialect = 'postgres' | 'mysql' | 'sqlite';

const POSTGRES = new Set(['postgres', 'aurora-postgres']);

/** PostgreSQL setting (transaction-local) that opens the DELETE guard for the purge. */
export const PURGE_SETTING = 'nestjs_system_audit.purge';
/** MySQL/MariaDB session variable that opens the DELETE guard for the purge. */
export const PURGE_VARIABLE = '@nestjs_system_audit_purge';

/** The columns of `audit_log` besides `seq`: an UPDATE must leave each of them as it is. */
export const AUDIT_LOG_FIXED_COLUMNS = [
  'id',
  'occurred_at',
  'action',
  'outcome',
  'kind',
  'actor_type',
  'actor_id',
  'actor_display',
  'source',
  'ip',
  'user_agent',
  'method',
  'route',
  'path',
  'request_id',
  'target_type',
  'target_id',
  'changes',
  'context',
  'reason',
  'error',
] as const;

const GUARDED = [AUDIT_LOG_TABLE, AUDIT_TREE_TABLE, AUDIT_CHECKPOINT_TABLE] as const;

/** `audit_log`'s `json` columns on PostgreSQL, compared as text (`json` has no equality). */
const PG_JSON_COLUMNS: ReadonlySet<string> = new Set(['changes', 'context', 'error']);

/** The statements that install or remove the guards on one data source. */
export interface AppendOnlyStatements {
  /** Creates the guards (functions and triggers). */
  create: string[];
  /** Removes them again. */
  drop: string[];
  /** The DELETE guards as SQLite's purge path drops and recreates them (empty elsewhere). */
  deleteGuards: DeleteGuard[];
}

/** One DELETE trigger: its name and the statements that create and drop it. */
export interface DeleteGuard {
  trigger: string;
  create: string;
  drop: string;
}

function dialectOf(queryRunner: QueryRunner): Dialect | undefined {
  const type = String(queryRunner.connection.options.type);
  if (POSTGRES.has(type)) return 'postgres';
  if (MYSQL_DRIVERS.has(type)) return 'mysql';
  if (SQLITE_DRIVERS.has(type)) return 'sqlite';
  return undefined;
}

/** `'text'` as an SQL string literal. */
const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** The error message of a refused statement on `table` (MySQL's MESSAGE_TEXT holds 128 characters). */
const refusal = (table: string): string =>
  `${table} is append-only: UPDATE and DELETE are refused (nestjs-system-audit)`.slice(0, 128);

/**
 * The guard statements for the data source of `queryRunner` (its `entityPrefix`, and on
 * PostgreSQL its `schema`); no statements on databases other than PostgreSQL,
 * MySQL/MariaDB and SQLite.
 */
export function appendOnlyStatements(queryRunner: QueryRunner): AppendOnlyStatements {
  const dialect = dialectOf(queryRunner);
  const none: AppendOnlyStatements = { create: [], drop: [], deleteGuards: [] };
  if (dialect === undefined) return none;
  const driver = queryRunner.connection.driver;
  const schema = dialect === 'postgres' ? (queryRunner.connection.options as { schema?: string }).schema : undefined;
  const qualified = (name: string): string => (schema ? `${driver.escape(schema)}.${driver.escape(name)}` : driver.escape(name));
  const tables = GUARDED.map((name) => prefixed(queryRunner, name));
  const [log] = tables as [string, string, string];
  const trigger = (table: string, what: 'update' | 'delete' | 'truncate' | 'insert' | 'insert_seq'): string =>
    what === 'insert' ? `${table}_no_replace` : what === 'insert_seq' ? `${table}_no_seq_replace` : `${table}_no_${what}`;

  if (dialect === 'postgres') {
    const fn = qualified(prefixed(queryRunner, 'audit_append_only'));
    const create = [
      `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $guard$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('${PURGE_SETTING}', true) = 'on' THEN
    RETURN OLD;
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION '% is append-only: TRUNCATE is refused (nestjs-system-audit)', TG_TABLE_NAME USING ERRCODE = '55000';
  END IF;
  RAISE EXCEPTION '% is append-only: UPDATE and DELETE are refused (nestjs-system-audit)', TG_TABLE_NAME USING ERRCODE = '55000';
END
$guard$`,
    ];
    const drop: string[] = [];
    for (const table of tables) {
      const on = qualified(table);
      // audit_log: the integrator's setting of a NULL seq (all else unchanged) is let through by the
      // trigger's WHEN, evaluated without calling the function (json has no "=": compared as text).
      const column = (row: 'OLD' | 'NEW', name: string): string => `${row}.${driver.escape(name)}${PG_JSON_COLUMNS.has(name) ? '::text' : ''}`;
      const when =
        table === log
          ? ` WHEN (NOT ((${AUDIT_LOG_FIXED_COLUMNS.map((name) => column('OLD', name)).join(', ')}) IS NOT DISTINCT FROM (${AUDIT_LOG_FIXED_COLUMNS.map((name) => column('NEW', name)).join(', ')})` +
            ` AND (OLD.${driver.escape('seq')} IS NULL OR NEW.${driver.escape('seq')} IS NOT DISTINCT FROM OLD.${driver.escape('seq')})))`
          : '';
      create.push(
        `CREATE TRIGGER ${driver.escape(trigger(table, 'update'))} BEFORE UPDATE ON ${on} FOR EACH ROW${when} EXECUTE FUNCTION ${fn}()`,
        `CREATE TRIGGER ${driver.escape(trigger(table, 'delete'))} BEFORE DELETE ON ${on} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
        `CREATE TRIGGER ${driver.escape(trigger(table, 'truncate'))} BEFORE TRUNCATE ON ${on} FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`,
      );
      for (const what of ['update', 'delete', 'truncate'] as const) {
        drop.push(`DROP TRIGGER IF EXISTS ${driver.escape(trigger(table, what))} ON ${on}`);
      }
    }
    drop.push(`DROP FUNCTION IF EXISTS ${fn}()`);
    return { create, drop, deleteGuards: [] };
  }

  const create: string[] = [];
  const drop: string[] = [];
  const deleteGuards: DeleteGuard[] = [];
  for (const table of tables) {
    const message = literal(refusal(table));
    let update: string;
    let remove: string;
    if (dialect === 'mysql') {
      // Compared as bytes: the columns' collation would take 'Alice' for 'ALICE' or 'alice ' (case, accents, trailing spaces).
      const signal = `SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = ${message}`;
      const updateBody =
        table === log
          ? `IF NOT (${AUDIT_LOG_FIXED_COLUMNS.map((column) => `CAST(NEW.${driver.escape(column)} AS BINARY) <=> CAST(OLD.${driver.escape(column)} AS BINARY)`).join(' AND ')}` +
            ` AND (OLD.${driver.escape('seq')} IS NULL OR NEW.${driver.escape('seq')} <=> OLD.${driver.escape('seq')})) THEN ${signal}; END IF`
          : signal;
      update = `CREATE TRIGGER ${driver.escape(trigger(table, 'update'))} BEFORE UPDATE ON ${driver.escape(table)} FOR EACH ROW ${updateBody}`;
      remove =
        `CREATE TRIGGER ${driver.escape(trigger(table, 'delete'))} BEFORE DELETE ON ${driver.escape(table)} FOR EACH ROW ` +
        `IF NOT (${PURGE_VARIABLE} <=> 1) THEN ${signal}; END IF`;
    } else {
      const abort = `BEGIN SELECT RAISE(ABORT, ${message}); END`;
      const when =
        table === log
          ? ` WHEN NOT (${AUDIT_LOG_FIXED_COLUMNS.map((column) => `NEW.${driver.escape(column)} IS OLD.${driver.escape(column)}`).join(' AND ')}` +
            ` AND (OLD.${driver.escape('seq')} IS NULL OR NEW.${driver.escape('seq')} IS OLD.${driver.escape('seq')}))`
          : '';
      // A REPLACE (INSERT OR REPLACE, UPDATE OR REPLACE) deletes the row it replaces without
      // firing DELETE triggers (unless recursive_triggers is on): guard the inserts and the
      // seq an update takes instead.
      const seq = driver.escape('seq');
      const seqTaken = `NEW.${seq} IS NOT NULL AND EXISTS (SELECT 1 FROM ${driver.escape(table)} WHERE ${seq} = NEW.${seq} AND ${driver.escape('id')} IS NOT NEW.${driver.escape('id')})`;
      const updateWhen = table === log ? `${when.replace(/^ WHEN NOT \(/, ' WHEN (NOT (')} OR (${seqTaken}))` : '';
      update = `CREATE TRIGGER ${driver.escape(trigger(table, 'update'))} BEFORE UPDATE ON ${driver.escape(table)} FOR EACH ROW${table === log ? updateWhen : when} ${abort}`;
      remove = `CREATE TRIGGER ${driver.escape(trigger(table, 'delete'))} BEFORE DELETE ON ${driver.escape(table)} FOR EACH ROW ${abort}`;
      deleteGuards.push({ trigger: trigger(table, 'delete'), create: remove, drop: `DROP TRIGGER ${driver.escape(trigger(table, 'delete'))}` });
      const keys = table === log ? ['id'] : table === tables[1] ? ['level', 'idx'] : ['tree_size'];
      const sameKey = `EXISTS (SELECT 1 FROM ${driver.escape(table)} WHERE ${keys.map((key) => `${driver.escape(key)} = NEW.${driver.escape(key)}`).join(' AND ')})`;
      const inserts =
        table === log
          ? // The writer's retried INSERT … ON CONFLICT DO NOTHING stays a no-op; an insert that would replace an event is dropped (the event stays as it is).
            [
              `CREATE TRIGGER ${driver.escape(trigger(table, 'insert'))} BEFORE INSERT ON ${driver.escape(table)} FOR EACH ROW WHEN ${sameKey} BEGIN SELECT RAISE(IGNORE); END`,
              `CREATE TRIGGER ${driver.escape(trigger(table, 'insert_seq'))} BEFORE INSERT ON ${driver.escape(table)} FOR EACH ROW WHEN ${seqTaken} ${abort}`,
            ]
          : [`CREATE TRIGGER ${driver.escape(trigger(table, 'insert'))} BEFORE INSERT ON ${driver.escape(table)} FOR EACH ROW WHEN ${sameKey} ${abort}`];
      create.push(...inserts);
      drop.push(`DROP TRIGGER IF EXISTS ${driver.escape(trigger(table, 'insert'))}`);
      if (table === log) drop.push(`DROP TRIGGER IF EXISTS ${driver.escape(trigger(table, 'insert_seq'))}`);
    }
    create.push(update, remove);
    drop.push(`DROP TRIGGER IF EXISTS ${driver.escape(trigger(table, 'update'))}`, `DROP TRIGGER IF EXISTS ${driver.escape(trigger(table, 'delete'))}`);
  }
  return { create, drop, deleteGuards };
}

/**
 * Runs `work` in a transaction in which rows of `audit_log`, `audit_tree` and
 * `audit_checkpoint` may be deleted (the retention purge); UPDATE stays refused. Outside
 * `work` the guards are in place again, also when `work` throws (the transaction is then
 * rolled back). When `queryRunner` is already in a transaction, `work` runs in a
 * savepoint of it.
 *
 * - PostgreSQL: `SET LOCAL nestjs_system_audit.purge = 'on'` for the transaction (reset
 *   to `off` before it ends, for a savepoint).
 * - MySQL/MariaDB: the session variable `@nestjs_system_audit_purge`, reset afterwards.
 * - SQLite: the DELETE triggers are dropped and recreated in the same transaction.
 *
 * @internal
 */
export async function withAuditPurge<T>(queryRunner: QueryRunner, work: (queryRunner: QueryRunner) => Promise<T>): Promise<T> {
  const dialect = dialectOf(queryRunner);
  await queryRunner.startTransaction();
  try {
    let result: T;
    if (dialect === 'postgres') {
      await queryRunner.query(`SET LOCAL ${PURGE_SETTING} = 'on'`);
      result = await work(queryRunner);
      await queryRunner.query(`SET LOCAL ${PURGE_SETTING} = 'off'`);
    } else if (dialect === 'mysql') {
      await queryRunner.query(`SET ${PURGE_VARIABLE} = 1`);
      try {
        result = await work(queryRunner);
      } catch (error) {
        await queryRunner.query(`SET ${PURGE_VARIABLE} = NULL`).catch(() => undefined); // a lost connection takes the variable with it
        throw error;
      }
      await queryRunner.query(`SET ${PURGE_VARIABLE} = NULL`);
    } else if (dialect === 'sqlite') {
      // Only the guards that exist (a schema made by `synchronize` has none) are lifted and restored.
      const { deleteGuards } = appendOnlyStatements(queryRunner);
      const names = deleteGuards.map((guard) => guard.trigger);
      const existing = names.length
        ? ((await queryRunner.query(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND name IN (${names.map(() => '?').join(', ')})`, names)) as Array<{
            name: string;
          }>)
        : [];
      const lifted = deleteGuards.filter((guard) => existing.some((row) => row.name === guard.trigger));
      for (const guard of lifted) await queryRunner.query(guard.drop);
      result = await work(queryRunner);
      for (const guard of lifted) await queryRunner.query(guard.create);
    } else {
      result = await work(queryRunner);
    }
    await queryRunner.commitTransaction();
    return result;
  } catch (error) {
    if (queryRunner.isTransactionActive) await queryRunner.rollbackTransaction();
    throw error;
  }
}
