import type { DataSource, MigrationInterface, QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE } from '../audit.constants.js';
import { AuditPartitionError } from '../exceptions/audit-partition.error.js';
import { prefixed } from './migrations/portable-table.js';
import { driverErrorCode, LOCK_NOT_AVAILABLE } from './database-errors.js';

/**
 * Monthly partitions of `audit_log` on PostgreSQL 13 or later (range partitions on
 * `occurred_at`, one per UTC month, plus a default partition that takes any event no
 * month partition covers), so that the retention purge can drop a whole month instead of
 * deleting its rows.
 *
 * PostgreSQL requires a partitioned table's unique indexes to include the partition key:
 * the primary key becomes `(id, occurred_at)` and `idx_audit_log_seq` a plain index. An
 * event's id and time never change and the writer stores an event again only with both,
 * so a retried write stays a no-op (`ON CONFLICT (id, occurred_at) DO NOTHING`); a `seq` stays unique
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
/**
 * Creating or dropping a partition takes an exclusive lock on audit_log, and writers queue
 * behind the wait for it: each try waits at most LOCK_TRY_TIMEOUT, and there are
 * LOCK_TRIES of them, further apart each time (about three seconds in all), so writers
 * are held up for a second in all at most while a long read or write holds the table.
 */
export const LOCK_TRY_TIMEOUT = '200ms';
export const LOCK_TRIES = 5;
/** The longest a creator of partitions waits for another one to finish. */
const CREATOR_WAIT = '30s';

/**
 * Runs `attempt` (a transaction that sets `lock_timeout` to {@link LOCK_TRY_TIMEOUT}) up to
 * {@link LOCK_TRIES} times while it fails for that timeout; the last failure is thrown.
 */
export async function retryLockTimeouts<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tried = 1; ; tried++) {
    try {
      return await attempt();
    } catch (error) {
      if (driverErrorCode(error) !== LOCK_NOT_AVAILABLE || tried >= LOCK_TRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * tried));
    }
  }
}

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
 * PostgreSQL). Reading a partition's bounds waits behind a `VACUUM FULL`, `CLUSTER` or
 * `REINDEX` of it as long as the session's `lock_timeout` lets it: to bound the wait,
 * call it in a transaction after `SET LOCAL lock_timeout = '5s'`.
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
 * Creates the month partitions from `firstMonth` to `lastMonth` (month indexes) that do
 * not exist yet, and the default partition when `withDefault`, in the query runner's
 * transaction. A month whose events the default partition already holds is skipped.
 */
async function createMonths(
  queryRunner: QueryRunner,
  table: LogTable,
  firstMonth: number,
  lastMonth: number,
  withDefault: boolean,
  lockTimeout?: string,
): Promise<AuditPartitionsResult> {
  const driver = queryRunner.connection.driver;
  // One creator at a time (instances starting together), until its transaction ends. The
  // wait for another creator is not bounded by lockTimeout (that one is for audit_log): a
  // creator's transaction is short, so a longer wait means it is stuck.
  if (lockTimeout) await queryRunner.query(`SET LOCAL lock_timeout = '${CREATOR_WAIT}'`);
  try {
    await queryRunner.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`nestjs-system-audit partitions ${table.qualified}`]);
  } catch (error) {
    // In the caller's transaction its own lock_timeout (if any) bounded the wait: its error stands.
    if (!lockTimeout || driverErrorCode(error) !== LOCK_NOT_AVAILABLE) throw error;
    throw new AuditPartitionError(`another session has been creating partitions of ${table.qualified} for ${CREATOR_WAIT} (its transaction holds their advisory lock)`);
  }
  if (lockTimeout) await queryRunner.query(`SET LOCAL lock_timeout = '${lockTimeout}'`);
  const existing = await partitionsOf(queryRunner, table);
  const covered = new Set(existing.filter((p) => p.from).map((p) => p.from!.getTime()));
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

  for (let month = firstMonth; month <= lastMonth; month++) {
    const from = monthStart(month);
    if (covered.has(from.getTime())) continue;
    const low = boundLiteral(from, table.withTimeZone);
    const high = boundLiteral(monthStart(month + 1), table.withTimeZone);
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
  if (withDefault && !defaultTable) {
    const name = `${table.name}_default`;
    const partition = `${driver.escape(table.schema)}.${driver.escape(name)}`;
    await queryRunner.query(`CREATE TABLE ${partition} PARTITION OF ${table.qualified} DEFAULT`);
    await finish(partition, name);
  }
  return result;
}

/** What a table's layout change must carry over (statements with `%TABLE%` for the new table), and what stops it. */
interface TableShape {
  primaryKey: string;
  indexes: Array<{ name: string; unique: boolean; columns: string[]; def: string }>;
  /** Triggers, foreign keys, row-level security and its policies, grants (table and column), the comment. */
  carried: string[];
  /** Objects that depend on the table and would be lost with it (views, foreign keys to it, publications, exclusion constraints). */
  dependents: string[];
}

const TABLE = '%TABLE%';

async function shapeOf(queryRunner: QueryRunner, table: LogTable): Promise<TableShape> {
  const query = async <T>(sql: string): Promise<T[]> => (await queryRunner.query(sql, [table.qualified])) as T[];
  const [primary] = await query<{ name: string }>(`SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`);
  if (!primary) throw new AuditPartitionError(`${table.qualified} has no primary key`);
  // Key columns only (an index's INCLUDE columns are not part of what it makes unique).
  const indexes = await query<{ name: string; unique: boolean; def: string; columns: string }>(
    `SELECT i.relname AS name, x.indisunique AS "unique", pg_get_indexdef(x.indexrelid) AS def,
            array_to_string(ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n) JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                                   WHERE k.n <= x.indnkeyatts ORDER BY k.n), ',') AS columns
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      WHERE x.indrelid = $1::regclass AND NOT x.indisprimary
      ORDER BY i.relname`,
  );
  const dependents = await query<{ what: string }>(
    `SELECT DISTINCT 'view ' || v.oid::regclass::text AS what
       FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1::regclass AND v.oid <> $1::regclass
     UNION ALL
     SELECT 'foreign key ' || quote_ident(conname) || ' of ' || conrelid::regclass::text FROM pg_constraint WHERE confrelid = $1::regclass AND contype = 'f'
     UNION ALL
     SELECT 'exclusion constraint ' || quote_ident(conname) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'x'
     UNION ALL
     SELECT 'publication ' || quote_ident(p.pubname) FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = $1::regclass
     UNION ALL
     SELECT 'replica identity ' || CASE relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING' ELSE 'USING INDEX' END FROM pg_class WHERE oid = $1::regclass AND relreplident <> 'd'`,
  );
  const carried: string[] = [];
  // Triggers (the append-only guards among them); on a partitioned table, its own, not their copies on partitions.
  for (const { def, name, enabled } of await query<{ def: string; name: string; enabled: string }>(
    `SELECT pg_get_triggerdef(t.oid) AS def, quote_ident(t.tgname) AS name, t.tgenabled AS enabled FROM pg_trigger t
      WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.tgname`,
  )) {
    carried.push(def);
    // Its state (a trigger definition does not say it): disabled, or fired on replicas (only) too.
    const state = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' }[enabled];
    if (state) carried.push(`ALTER TABLE ${TABLE} ${state} TRIGGER ${name}`);
  }
  // CHECK constraints after the copy, as they were (one NOT VALID stays so: older rows may break it).
  for (const { name, def } of await query<{ name: string; def: string }>(
    `SELECT quote_ident(conname) AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c' ORDER BY conname`,
  )) {
    carried.push(`ALTER TABLE ${TABLE} ADD CONSTRAINT ${name} ${def}`);
  }
  for (const { name, def } of await query<{ name: string; def: string }>(
    `SELECT quote_ident(conname) AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname`,
  )) {
    carried.push(`ALTER TABLE ${TABLE} ADD CONSTRAINT ${name} ${def}`);
  }
  const [security] = await query<{ rls: boolean; force: boolean; comment: string | null }>(
    `SELECT relrowsecurity AS rls, relforcerowsecurity AS force, quote_literal(obj_description(oid, 'pg_class')) AS comment FROM pg_class WHERE oid = $1::regclass`,
  );
  if (security!.rls) carried.push(`ALTER TABLE ${TABLE} ENABLE ROW LEVEL SECURITY`);
  if (security!.force) carried.push(`ALTER TABLE ${TABLE} FORCE ROW LEVEL SECURITY`);
  for (const { def } of await query<{ def: string }>(
    `SELECT 'CREATE POLICY ' || quote_ident(p.polname) || ' ON ${TABLE} AS ' || CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END
            || ' FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
            || ' TO ' || (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ') FROM unnest(p.polroles) r)
            || COALESCE(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', '')
            || COALESCE(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', '') AS def
       FROM pg_policy p WHERE p.polrelid = $1::regclass ORDER BY p.polname`,
  )) {
    carried.push(def);
  }
  const grantee = `CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END`;
  for (const grant of await query<{ grantee: string; privilege: string; grantable: boolean }>(
    `SELECT ${grantee} AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`,
  )) {
    carried.push(`GRANT ${grant.privilege} ON ${TABLE} TO ${grant.grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  for (const grant of await query<{ column: string; grantee: string; privilege: string; grantable: boolean }>(
    `SELECT quote_ident(c.attname) AS "column", ${grantee} AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_attribute c CROSS JOIN LATERAL aclexplode(c.attacl) a
      WHERE c.attrelid = $1::regclass AND c.attacl IS NOT NULL AND NOT c.attisdropped AND a.grantee <> (SELECT relowner FROM pg_class WHERE oid = $1::regclass)`,
  )) {
    carried.push(`GRANT ${grant.privilege} (${grant.column}) ON ${TABLE} TO ${grant.grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  if (security!.comment !== null) carried.push(`COMMENT ON TABLE ${TABLE} IS ${security!.comment}`);
  return {
    primaryKey: primary.name,
    indexes: indexes.map((index) => ({ ...index, columns: index.columns.split(','), def: index.def.replace(/ ON ONLY /, ' ON ') })),
    carried,
    dependents: dependents.map((row) => row.what),
  };
}

/** Refuses, naming them, what would be lost with the table (checked before anything changes). */
function checkDependents(table: LogTable, shape: TableShape): void {
  if (shape.dependents.length === 0) return;
  throw new AuditPartitionError(
    `${table.qualified} is rebuilt, and what depends on it would be lost: ${shape.dependents.join(', ')}. Remove it, run the migration, and set it up again ` +
      '(a publication of a partitioned table: see publish_via_partition_root; a replica identity: on each partition)',
  );
}

/**
 * Moves every row of `table` into a new table of the same name and columns, `partitioned`
 * or not, and carries over its indexes, constraints, triggers, row-level security,
 * grants, comment, owner and the sequences of its columns.
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
  // Defaults, CHECK constraints, identity and generated columns, storage, compression, column comments and statistics: all but the indexes.
  await queryRunner.query(
    `CREATE TABLE ${table.qualified} (LIKE ${oldQualified} INCLUDING ALL EXCLUDING INDEXES EXCLUDING CONSTRAINTS)` + (partitioned ? ` PARTITION BY RANGE (${key})` : ''),
  );
  if (partitioned) {
    const now = monthIndex(new Date());
    const [year, month] = (first?.month ?? '').split('-').map(Number);
    const start = year && month ? Math.min(now, year * 12 + month - 1) : now;
    await createMonths(queryRunner, table, start, now + monthsAhead, true);
  }
  const columns = (
    (await queryRunner.query(
      `SELECT quote_ident(attname) AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
      [oldQualified],
    )) as Array<{ name: string }>
  )
    .map((column) => column.name)
    .join(', ');
  await queryRunner.query(`INSERT INTO ${table.qualified} (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM ${oldQualified}`);
  // Identity columns go on from the largest value copied; a serial column's sequence moves to the new table.
  for (const { column } of (await queryRunner.query(`SELECT attname AS "column" FROM pg_attribute WHERE attrelid = $1::regclass AND attidentity <> ''`, [
    table.qualified,
  ])) as Array<{ column: string }>) {
    // Where the old sequence was (numbers it handed out to rows gone since are not given again).
    const [from] = (await queryRunner.query(`SELECT pg_get_serial_sequence($1, $2) AS old, pg_get_serial_sequence($3, $2) AS new`, [
      oldQualified,
      column,
      table.qualified,
    ])) as Array<{ old: string; new: string }>;
    const [state] = (await queryRunner.query(`SELECT last_value AS "last", is_called AS called FROM ${from!.old}`)) as Array<{ last: string; called: boolean }>;
    await queryRunner.query(`SELECT setval($1, $2, $3)`, [from!.new, state!.last, state!.called]);
  }
  for (const { sequence, column } of (await queryRunner.query(
    `SELECT s.oid::regclass::text AS sequence, quote_ident(a.attname) AS "column"
       FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::regclass AND d.deptype = 'a'`,
    [oldQualified],
  )) as Array<{ sequence: string; column: string }>) {
    await queryRunner.query(`ALTER SEQUENCE ${sequence} OWNED BY ${table.qualified}.${column}`);
  }
  await queryRunner.query(`DROP TABLE ${oldQualified}`);
  const primaryColumns = partitioned ? `${driver.escape('id')}, ${key}` : driver.escape('id');
  await queryRunner.query(`ALTER TABLE ${table.qualified} ADD CONSTRAINT ${driver.escape(shape.primaryKey)} PRIMARY KEY (${primaryColumns})`);
  for (const index of shape.indexes) {
    let def = index.def;
    if (index.name === SEQ_INDEX) def = partitioned ? def.replace(/^CREATE UNIQUE INDEX /, 'CREATE INDEX ') : def.replace(/^CREATE INDEX /, 'CREATE UNIQUE INDEX ');
    await queryRunner.query(def);
  }
  for (const statement of shape.carried) await queryRunner.query(statement.split(TABLE).join(table.qualified));
  if (partitioned) {
    const triggers = await truncateTriggers(queryRunner, table);
    for (const partition of await partitionsOf(queryRunner, table)) {
      for (const trigger of triggers) {
        await queryRunner.query(`CREATE TRIGGER ${driver.escape(trigger.name)} ${trigger.timing} TRUNCATE ON ${partition.table} FOR EACH STATEMENT EXECUTE FUNCTION ${trigger.fn}()`);
      }
    }
  }
  const [me] = (await queryRunner.query('SELECT current_user AS name')) as Array<{ name: string }>;
  if (table.owner && table.owner !== me!.name) await queryRunner.query(`ALTER TABLE ${table.qualified} OWNER TO ${driver.escape(table.owner)}`);
}

/**
 * Turns `audit_log` into a table partitioned by month of `occurred_at` (PostgreSQL 13 or
 * later), for a migration: one partition per month from the oldest event's to
 * `monthsAhead` months after the current one, and a default partition. Every row, index,
 * constraint, trigger (the append-only guards), row-level security policy, grant (also on
 * columns), the comment and the owner are carried over; identity and generated columns
 * keep working. The primary key becomes `(id, occurred_at)` and `idx_audit_log_seq` a
 * plain index. The rows are copied under an exclusive lock, in the query runner's
 * transaction (a migration's) or in one of its own: plan the time a large table takes.
 * Nothing to do when the table is already partitioned (its missing months are created).
 *
 * @throws AuditPartitionError, before anything changes, on another database, an older
 * server, a missing table, a unique index whose key does not include `occurred_at`
 * (PostgreSQL could not keep it), or objects that depend on the table (views, foreign
 * keys to it, publications, exclusion constraints).
 */
export async function partitionAuditLog(queryRunner: QueryRunner, options?: AuditPartitionOptions): Promise<void> {
  checkPostgres(queryRunner, 'partitionAuditLog()');
  const monthsAhead = checkOptions(options);
  const table = await logTable(queryRunner);
  if (table.kind === undefined) throw new AuditPartitionError(`${table.qualified} does not exist: run AuditMigrations first`);
  const now = monthIndex(new Date());
  if (table.kind === 'p') {
    await inTransaction(queryRunner, async () => void (await createMonths(queryRunner, table, now, now + monthsAhead, true)));
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
    checkDependents(table, shape);
    await rebuild(queryRunner, table, shape, true, monthsAhead);
  });
}

/** Runs `work` in the query runner's transaction, or in one of its own (all or nothing either way). */
async function inTransaction<T>(queryRunner: QueryRunner, work: () => Promise<T>): Promise<T> {
  if (queryRunner.isTransactionActive) return work();
  await queryRunner.startTransaction();
  try {
    const result = await work();
    await queryRunner.commitTransaction();
    return result;
  } catch (error) {
    if (queryRunner.isTransactionActive) await queryRunner.rollbackTransaction();
    throw error;
  }
}

/**
 * Turns a partitioned `audit_log` back into one table (the `down` of a migration that
 * called {@link partitionAuditLog}), carrying over what it carries; the primary key `(id)`
 * and `idx_audit_log_seq` unique again. Nothing to do when the table is not partitioned.
 *
 * @throws AuditPartitionError on another database, a missing table, or objects that
 * depend on the table; the database's error when two events share an id or a `seq` (the
 * unique keys are refused). Nothing changes then.
 */
export async function unpartitionAuditLog(queryRunner: QueryRunner): Promise<void> {
  checkPostgres(queryRunner, 'unpartitionAuditLog()');
  const table = await logTable(queryRunner);
  if (table.kind === undefined) throw new AuditPartitionError(`${table.qualified} does not exist`);
  if (table.kind !== 'p') return;
  await inTransaction(queryRunner, async () => {
    await queryRunner.query(`LOCK TABLE ${table.qualified} IN ACCESS EXCLUSIVE MODE`);
    const shape = await shapeOf(queryRunner, table);
    checkDependents(table, shape);
    await rebuild(queryRunner, table, shape, false, 0);
  });
}

/**
 * Creates the partitions of the current month and of `monthsAhead` months after it that
 * do not exist yet (a month whose events the default partition already holds is skipped
 * and reported). Each month is created in a transaction of its own (in the query runner's
 * when it has one open). Outside a transaction of the caller's, each try waits at most
 * 200 ms for its lock on `audit_log` (writers queue behind that wait; five tries over about
 * three seconds, then the lock timeout's error), and holds it while PostgreSQL checks that
 * the default partition has no events of that month: keep the default partition empty.
 * Callers at the same time take turns. Run it as the table's owner, e.g. monthly from a
 * scheduled job when the application's role does not own `audit_log`; the module itself
 * tries at start-up, daily and at each purge.
 *
 * @throws AuditPartitionError on another database, when `audit_log` is not partitioned, or
 * when another session has held the creators' lock for 30 s (it is stuck).
 */
export async function createAuditPartitions(target: DataSource | QueryRunner, options?: AuditPartitionOptions): Promise<AuditPartitionsResult> {
  const monthsAhead = checkOptions(options);
  const own = 'createQueryRunner' in target;
  const queryRunner = own ? target.createQueryRunner() : target;
  checkPostgres(queryRunner, 'createAuditPartitions()');
  try {
    const table = await logTable(queryRunner);
    if (table.kind !== 'p') throw new AuditPartitionError(`${table.qualified} is not partitioned: partition it with partitionAuditLog() in a migration first`);
    const now = monthIndex(new Date());
    if (queryRunner.isTransactionActive) return await createMonths(queryRunner, table, now, now + monthsAhead, true);
    const result: AuditPartitionsResult = { created: [], skipped: [] };
    for (let month = now; month <= now + monthsAhead; month++) {
      const one = await retryLockTimeouts(() =>
        inTransaction(queryRunner, () => createMonths(queryRunner, table, month, month, month === now + monthsAhead, LOCK_TRY_TIMEOUT)),
      );
      result.created.push(...one.created);
      result.skipped.push(...one.skipped);
    }
    return result;
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
