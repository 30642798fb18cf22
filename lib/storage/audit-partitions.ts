import type { DataSource, MigrationInterface, QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE } from '../audit.constants.js';
import { AuditPartitionError } from '../exceptions/audit-partition.error.js';
import { prefixed } from './migrations/portable-table.js';

/**
 * Monthly partitions of `audit_log` on PostgreSQL 13 or later (range partitions on
 * `occurred_at`, one per UTC month, plus a default partition that takes any event no
 * month partition covers), so that the retention purge can drop a whole month instead of
 * deleting its rows.
 *
 * PostgreSQL requires a partitioned table's unique indexes to include the partition key:
 * the primary key becomes `(id, occurred_at)` and `idx_audit_log_seq` a plain index. An
 * event's id and time never change and the writer stores an event again only with both,
 * so a retried write stays a no-op (`ON CONFLICT DO NOTHING`); a `seq` stays unique
 * through the Merkle tree's own key (`audit_tree (level, idx)`, written in the same
 * transaction as the `seq`), and `verify()` reports a forged duplicate.
 */

const POSTGRES = new Set(['postgres', 'aurora-postgres']);
/** PostgreSQL 13: BEFORE row triggers (the append-only guards) on partitioned tables. */
const MIN_SERVER_VERSION = 130000;
export const DEFAULT_MONTHS_AHEAD = 3;
const MAX_MONTHS_AHEAD = 120;
const SEQ_INDEX = 'idx_audit_log_seq';
const PARTITION_KEY = 'occurred_at';

/** Options of {@link partitionAuditLog} and {@link createAuditPartitions}. */
export interface AuditPartitionOptions {
  /** Months after the current one (UTC) whose partitions are created now: 0 to 120, default 3. */
  monthsAhead?: number;
}

/** What {@link createAuditPartitions} did. */
export interface AuditPartitionsResult {
  /** The partitions it created (table names). */
  created: string[];
  /**
   * Months (`2027-01`) left to the default partition, which already holds events of them
   * (PostgreSQL cannot create a partition over rows of the default one).
   */
  skipped: string[];
}

/** One partition of `audit_log`. */
export interface AuditLogPartition {
  /** Its name, qualified and quoted for SQL. */
  table: string;
  name: string;
  /** Its range, `[from, to)` in UTC; both undefined for the default partition (or a range that is not a time). */
  from?: Date;
  to?: Date;
  /** The role that owns it. */
  owner: string;
}

interface LogTable {
  schema: string;
  name: string;
  /** Qualified, quoted. */
  qualified: string;
  /** `r` plain table, `p` partitioned table, undefined when missing. */
  kind?: string;
  /** `occurred_at`'s type has a time zone. */
  withTimeZone: boolean;
  owner?: string;
}

function checkPostgres(queryRunner: QueryRunner, what: string): void {
  const type = String(queryRunner.connection.options.type);
  if (!POSTGRES.has(type)) throw new AuditPartitionError(`${what} needs PostgreSQL 13 or later; this data source is ${type}`);
}

function checkOptions(options: AuditPartitionOptions | undefined): number {
  if (options === undefined) return DEFAULT_MONTHS_AHEAD;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new AuditPartitionError('options must be an object such as { monthsAhead: 3 }');
  }
  for (const key of Object.keys(options)) {
    if (key !== 'monthsAhead') throw new AuditPartitionError(`${key} is not an option (known: monthsAhead)`);
  }
  const months = options.monthsAhead ?? DEFAULT_MONTHS_AHEAD;
  if (!Number.isInteger(months) || months < 0 || months > MAX_MONTHS_AHEAD) {
    throw new AuditPartitionError(`monthsAhead must be a whole number from 0 to ${MAX_MONTHS_AHEAD}, got ${JSON.stringify(options.monthsAhead)}`);
  }
  return months;
}

async function logTable(queryRunner: QueryRunner): Promise<LogTable>;
async function logTable(queryRunner: QueryRunner, oldServer: 'undefined'): Promise<LogTable | undefined>;
async function logTable(queryRunner: QueryRunner, oldServer?: 'undefined'): Promise<LogTable | undefined> {
  const driver = queryRunner.connection.driver;
  const schemaOption = (queryRunner.connection.options as { schema?: string }).schema;
  const name = prefixed(queryRunner, AUDIT_LOG_TABLE);
  const [server] = (await queryRunner.query(`SELECT current_setting('server_version_num')::int AS version, COALESCE($1::text, current_schema()) AS schema`, [
    schemaOption ?? null,
  ])) as Array<{ version: number; schema: string }>;
  if (server!.version < MIN_SERVER_VERSION) {
    if (oldServer) return undefined;
    throw new AuditPartitionError(`monthly partitions need PostgreSQL 13 or later; this server is version ${server!.version}`);
  }
  const schema = server!.schema;
  const [row] = (await queryRunner.query(
    `SELECT c.relkind AS kind, pg_get_userbyid(c.relowner) AS owner, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 AND NOT a.attisdropped
      WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name, PARTITION_KEY],
  )) as Array<{ kind: string; owner: string; type: string | null }>;
  return {
    schema,
    name,
    qualified: `${driver.escape(schema)}.${driver.escape(name)}`,
    kind: row?.kind,
    withTimeZone: row?.type?.includes('with time zone') ?? false,
    owner: row?.owner,
  };
}

/** The first instant of month `index` (years × 12 + month, UTC). */
const monthStart = (index: number): Date => new Date(Date.UTC(Math.floor(index / 12), index % 12, 1));
const monthIndex = (date: Date): number => date.getUTCFullYear() * 12 + date.getUTCMonth();
const monthLabel = (index: number): string => `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, '0')}`;

/** A range bound as a literal of `occurred_at`'s type (UTC). */
function boundLiteral(date: Date, withTimeZone: boolean): string {
  const text = date.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, '');
  return `'${text}${withTimeZone ? '+00' : ''}'`;
}

/** A bound as PostgreSQL prints it (`2026-01-01 00:00:00`, with `+00` or another offset for a time zone type). */
function parseBound(text: string): Date | undefined {
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)([+-]\d{2}(?::?\d{2})?)?$/.exec(text);
  if (!match) return undefined;
  const offset = match[3] === undefined ? 'Z' : /^[+-]\d{2}$/.test(match[3]) ? `${match[3]}:00` : match[3].replace(/^([+-]\d{2})(\d{2})$/, '$1:$2');
  const date = new Date(`${match[1]}T${match[2]}${offset}`);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

async function partitionsOf(queryRunner: QueryRunner, table: LogTable): Promise<AuditLogPartition[]> {
  const rows = (await queryRunner.query(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS "table", c.relname AS name,
            pg_get_expr(c.relpartbound, c.oid) AS bound, pg_get_userbyid(c.relowner) AS owner
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE i.inhparent = $1::regclass
      ORDER BY c.relname`,
    [table.qualified],
  )) as Array<{ table: string; name: string; bound: string; owner: string }>;
  return rows.map((row) => {
    const range = /^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$/.exec(row.bound);
    const from = range ? parseBound(range[1]!) : undefined;
    const to = range ? parseBound(range[2]!) : undefined;
    return from && to ? { table: row.table, name: row.name, from, to, owner: row.owner } : { table: row.table, name: row.name, owner: row.owner };
  });
}

/**
 * The partitions of `audit_log`, oldest month first (the default partition and ranges that
 * are not months last); `undefined` when `audit_log` is not partitioned (or not on
 * PostgreSQL).
 */
export async function listAuditPartitions(queryRunner: QueryRunner): Promise<AuditLogPartition[] | undefined> {
  if (!POSTGRES.has(String(queryRunner.connection.options.type))) return undefined;
  const table = await logTable(queryRunner, 'undefined');
  if (table?.kind !== 'p') return undefined;
  const partitions = await partitionsOf(queryRunner, table);
  return partitions.sort((a, b) => (a.from?.getTime() ?? Infinity) - (b.from?.getTime() ?? Infinity));
}

/** The statement-level TRUNCATE triggers of `audit_log` (not inherited by partitions: they are copied onto each). */
async function truncateTriggers(queryRunner: QueryRunner, table: LogTable): Promise<Array<{ name: string; timing: string; fn: string }>> {
  const rows = (await queryRunner.query(
    `SELECT t.tgname AS name, (t.tgtype & 2) <> 0 AS before, t.tgfoid::regproc::text AS fn
       FROM pg_trigger t WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal AND (t.tgtype & 32) <> 0 AND t.tgnargs = 0`,
    [table.qualified],
  )) as Array<{ name: string; before: boolean; fn: string }>;
  return rows.map((row) => ({ name: row.name, timing: row.before ? 'BEFORE' : 'AFTER', fn: row.fn }));
}

/**
 * Creates the month partitions from `firstMonth` to `monthsAhead` months after the current
 * one that do not exist yet (and the default partition when `withDefault`).
 */
async function createMonths(
  queryRunner: QueryRunner,
  table: LogTable,
  monthsAhead: number,
  firstMonth: number,
  withDefault: boolean,
): Promise<AuditPartitionsResult> {
  const driver = queryRunner.connection.driver;
  // One creator at a time (instances starting together), until its transaction ends.
  await queryRunner.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`nestjs-system-audit partitions ${table.qualified}`]);
  const existing = await partitionsOf(queryRunner, table);
  const covered = new Set(existing.filter((p) => p.from).map((p) => p.from!.getTime()));
  const hasDefault = existing.some((p) => !p.from);
  const defaultTable = existing.find((p) => !p.from)?.table;
  const triggers = await truncateTriggers(queryRunner, table);
  const result: AuditPartitionsResult = { created: [], skipped: [] };
  const [me] = (await queryRunner.query('SELECT current_user AS name')) as Array<{ name: string }>;

  const finish = async (partition: string, name: string): Promise<void> => {
    for (const trigger of triggers) {
      await queryRunner.query(`CREATE TRIGGER ${driver.escape(trigger.name)} ${trigger.timing} TRUNCATE ON ${partition} FOR EACH STATEMENT EXECUTE FUNCTION ${trigger.fn}()`);
    }
    if (table.owner && table.owner !== me!.name) await queryRunner.query(`ALTER TABLE ${partition} OWNER TO ${driver.escape(table.owner)}`);
    result.created.push(name);
  };

  const last = monthIndex(new Date()) + monthsAhead;
  for (let month = firstMonth; month <= last; month++) {
    const from = monthStart(month);
    if (covered.has(from.getTime())) continue;
    const to = monthStart(month + 1);
    const low = boundLiteral(from, table.withTimeZone);
    const high = boundLiteral(to, table.withTimeZone);
    if (defaultTable) {
      const [held] = (await queryRunner.query(
        `SELECT EXISTS (SELECT 1 FROM ${defaultTable} WHERE ${driver.escape(PARTITION_KEY)} >= ${low} AND ${driver.escape(PARTITION_KEY)} < ${high}) AS held`,
      )) as Array<{ held: boolean }>;
      if (held!.held) {
        result.skipped.push(monthLabel(month));
        continue;
      }
    }
    const name = `${table.name}_p${monthLabel(month).replace('-', '_')}`;
    const partition = `${driver.escape(table.schema)}.${driver.escape(name)}`;
    await queryRunner.query(`CREATE TABLE ${partition} PARTITION OF ${table.qualified} FOR VALUES FROM (${low}) TO (${high})`);
    await finish(partition, name);
  }
  if (withDefault && !hasDefault) {
    const name = `${table.name}_default`;
    const partition = `${driver.escape(table.schema)}.${driver.escape(name)}`;
    await queryRunner.query(`CREATE TABLE ${partition} PARTITION OF ${table.qualified} DEFAULT`);
    await finish(partition, name);
  }
  return result;
}

/** What a table's layout change must carry over: indexes, triggers, grants. */
interface TableShape {
  primaryKey: string;
  indexes: Array<{ name: string; unique: boolean; columns: string[]; def: string }>;
  triggers: string[];
  grants: string[];
}

async function shapeOf(queryRunner: QueryRunner, table: LogTable): Promise<TableShape> {
  const [primary] = (await queryRunner.query(`SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, [
    table.qualified,
  ])) as Array<{ name: string }>;
  if (!primary) throw new AuditPartitionError(`${table.qualified} has no primary key`);
  const indexes = (await queryRunner.query(
    `SELECT i.relname AS name, x.indisunique AS "unique", pg_get_indexdef(x.indexrelid) AS def,
            array_to_string(ARRAY(SELECT a.attname FROM unnest(x.indkey) k JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k), ',') AS columns
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      WHERE x.indrelid = $1::regclass AND NOT x.indisprimary
      ORDER BY i.relname`,
    [table.qualified],
  )) as Array<{ name: string; unique: boolean; def: string; columns: string }>;
  const triggers = (await queryRunner.query(
    `SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.tgname`,
    [table.qualified],
  )) as Array<{ def: string }>;
  const grants = (await queryRunner.query(
    `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`,
    [table.qualified],
  )) as Array<{ grantee: string; privilege: string; grantable: boolean }>;
  return {
    primaryKey: primary.name,
    indexes: indexes.map((index) => ({ ...index, columns: index.columns.split(','), def: index.def.replace(/ ON ONLY /, ' ON ') })),
    triggers: triggers.map((trigger) => trigger.def),
    grants: grants.map((grant) => `GRANT ${grant.privilege} ON ${table.qualified} TO ${grant.grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`),
  };
}

/**
 * Moves every row of `table` into a new table of the same name and columns, `partitioned`
 * or not, and carries over its indexes, triggers, grants and owner.
 */
async function rebuild(queryRunner: QueryRunner, table: LogTable, shape: TableShape, partitioned: boolean, monthsAhead: number): Promise<void> {
  const driver = queryRunner.connection.driver;
  const key = driver.escape(PARTITION_KEY);
  // The first month as UTC text (a time without zone stores UTC: the entity's transformer writes it so, as the bounds are).
  const earliest = table.withTimeZone ? `min(${key}) AT TIME ZONE 'UTC'` : `min(${key})`;
  const [first] = (await queryRunner.query(`SELECT to_char(${earliest}, 'YYYY-MM') AS month FROM ${table.qualified}`)) as Array<{ month: string | null }>;
  const old = `${table.name}_relayout`;
  const oldQualified = `${driver.escape(table.schema)}.${driver.escape(old)}`;
  await queryRunner.query(`ALTER TABLE ${table.qualified} RENAME TO ${driver.escape(old)}`);
  await queryRunner.query(
    `CREATE TABLE ${table.qualified} (LIKE ${oldQualified} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)` +
      (partitioned ? ` PARTITION BY RANGE (${key})` : ''),
  );
  if (partitioned) {
    const now = monthIndex(new Date());
    const [year, month] = (first?.month ?? '').split('-').map(Number);
    const start = year && month ? Math.min(now, year * 12 + month - 1) : now;
    await createMonths(queryRunner, table, monthsAhead, start, true);
  }
  await queryRunner.query(`INSERT INTO ${table.qualified} SELECT * FROM ${oldQualified}`);
  await queryRunner.query(`DROP TABLE ${oldQualified}`);
  const primaryColumns = partitioned ? `${driver.escape('id')}, ${key}` : driver.escape('id');
  await queryRunner.query(`ALTER TABLE ${table.qualified} ADD CONSTRAINT ${driver.escape(shape.primaryKey)} PRIMARY KEY (${primaryColumns})`);
  for (const index of shape.indexes) {
    let def = index.def;
    if (index.name === SEQ_INDEX) def = partitioned ? def.replace(/^CREATE UNIQUE INDEX /, 'CREATE INDEX ') : def.replace(/^CREATE INDEX /, 'CREATE UNIQUE INDEX ');
    await queryRunner.query(def);
  }
  for (const trigger of shape.triggers) await queryRunner.query(trigger);
  if (partitioned) {
    const triggers = await truncateTriggers(queryRunner, table);
    for (const partition of await partitionsOf(queryRunner, table)) {
      for (const trigger of triggers) {
        await queryRunner.query(`CREATE TRIGGER ${driver.escape(trigger.name)} ${trigger.timing} TRUNCATE ON ${partition.table} FOR EACH STATEMENT EXECUTE FUNCTION ${trigger.fn}()`);
      }
    }
  }
  for (const grant of shape.grants) await queryRunner.query(grant);
  const [me] = (await queryRunner.query('SELECT current_user AS name')) as Array<{ name: string }>;
  if (table.owner && table.owner !== me!.name) await queryRunner.query(`ALTER TABLE ${table.qualified} OWNER TO ${driver.escape(table.owner)}`);
}

/**
 * Turns `audit_log` into a table partitioned by month of `occurred_at` (PostgreSQL 13 or
 * later), for a migration: one partition per month from the oldest event's to
 * `monthsAhead` months after the current one, and a default partition. Every row, index,
 * trigger (the append-only guards), grant and the owner are carried over; the primary key
 * becomes `(id, occurred_at)` and `idx_audit_log_seq` a plain index. The rows are copied
 * under an exclusive lock, in the query runner's transaction (a migration's) or in one of
 * its own: plan the time a large table takes. Nothing to do when the table is already
 * partitioned (its missing months are created).
 *
 * @throws AuditPartitionError on another database, an older server, a missing table, or a
 * unique index that does not include `occurred_at` (PostgreSQL could not keep it).
 */
export async function partitionAuditLog(queryRunner: QueryRunner, options?: AuditPartitionOptions): Promise<void> {
  checkPostgres(queryRunner, 'partitionAuditLog()');
  const monthsAhead = checkOptions(options);
  const table = await logTable(queryRunner);
  if (table.kind === undefined) throw new AuditPartitionError(`${table.qualified} does not exist: run AuditMigrations first`);
  if (table.kind === 'p') {
    await inTransaction(queryRunner, async () => void (await createMonths(queryRunner, table, monthsAhead, monthIndex(new Date()), true)));
    return;
  }
  if (table.kind !== 'r') throw new AuditPartitionError(`${table.qualified} is not a table (relkind ${table.kind})`);
  await inTransaction(queryRunner, async () => {
    await queryRunner.query(`LOCK TABLE ${table.qualified} IN ACCESS EXCLUSIVE MODE`);
    const shape = await shapeOf(queryRunner, table);
    const blocking = shape.indexes.find((index) => index.unique && index.name !== SEQ_INDEX && !index.columns.includes(PARTITION_KEY));
    if (blocking) {
      throw new AuditPartitionError(`unique index ${blocking.name} (${blocking.columns.join(', ')}) does not include ${PARTITION_KEY}; a partitioned table cannot keep it`);
    }
    await rebuild(queryRunner, table, shape, true, monthsAhead);
  });
}

/** Runs `work` in the query runner's transaction, or in one of its own (all or nothing either way). */
async function inTransaction(queryRunner: QueryRunner, work: () => Promise<void>): Promise<void> {
  if (queryRunner.isTransactionActive) return work();
  await queryRunner.startTransaction();
  try {
    await work();
    await queryRunner.commitTransaction();
  } catch (error) {
    if (queryRunner.isTransactionActive) await queryRunner.rollbackTransaction();
    throw error;
  }
}

/**
 * Turns a partitioned `audit_log` back into one table (the `down` of a migration that
 * called {@link partitionAuditLog}): every row, index, trigger, grant and the owner carried
 * over, the primary key `(id)` and `idx_audit_log_seq` unique again. Nothing to do when
 * the table is not partitioned.
 *
 * @throws AuditPartitionError on another database or a missing table; the database's
 * error when two events share an id or a `seq` (the unique keys are refused).
 */
export async function unpartitionAuditLog(queryRunner: QueryRunner): Promise<void> {
  checkPostgres(queryRunner, 'unpartitionAuditLog()');
  const table = await logTable(queryRunner);
  if (table.kind === undefined) throw new AuditPartitionError(`${table.qualified} does not exist`);
  if (table.kind !== 'p') return;
  await inTransaction(queryRunner, async () => {
    await queryRunner.query(`LOCK TABLE ${table.qualified} IN ACCESS EXCLUSIVE MODE`);
    await rebuild(queryRunner, table, await shapeOf(queryRunner, table), false, 0);
  });
}

/**
 * Creates the partitions of the current month and of `monthsAhead` months after it that
 * do not exist yet, in one transaction (a month whose events the default partition
 * already holds is skipped and reported). Run it as the table's owner, e.g. monthly from a
 * scheduled job when the application's role does not own `audit_log`; the module itself
 * tries at start-up, daily and at each purge.
 *
 * @throws AuditPartitionError on another database or when `audit_log` is not partitioned.
 */
export async function createAuditPartitions(target: DataSource | QueryRunner, options?: AuditPartitionOptions): Promise<AuditPartitionsResult> {
  const monthsAhead = checkOptions(options);
  const own = 'createQueryRunner' in target;
  const queryRunner = own ? target.createQueryRunner() : target;
  checkPostgres(queryRunner, 'createAuditPartitions()');
  try {
    if (own) await queryRunner.startTransaction();
    const table = await logTable(queryRunner);
    if (table.kind !== 'p') throw new AuditPartitionError(`${table.qualified} is not partitioned: partition it with partitionAuditLog() in a migration first`);
    // Creating a partition locks audit_log: writers would queue behind a long wait.
    if (own) await queryRunner.query(`SET LOCAL lock_timeout = '1s'`);
    const result = await createMonths(queryRunner, table, monthsAhead, monthIndex(new Date()), true);
    if (own) await queryRunner.commitTransaction();
    return result;
  } catch (error) {
    if (own && queryRunner.isTransactionActive) await queryRunner.rollbackTransaction();
    throw error;
  } finally {
    if (own) await queryRunner.release();
  }
}

/**
 * An optional migration: `audit_log` partitioned by month on PostgreSQL
 * ({@link partitionAuditLog} with its defaults), back to one table on `down`. List it
 * after `AuditMigrations`. On other databases it changes nothing.
 */
export class PartitionAuditLogMonthly1767225600000 implements MigrationInterface {
  name = 'PartitionAuditLogMonthly1767225600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    if (POSTGRES.has(String(queryRunner.connection.options.type))) await partitionAuditLog(queryRunner);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    if (POSTGRES.has(String(queryRunner.connection.options.type))) await unpartitionAuditLog(queryRunner);
  }
}
