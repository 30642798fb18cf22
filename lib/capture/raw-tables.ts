import type { DataSource, EntityMetadata } from 'typeorm';
import {
  AUDIT_CHECKPOINT_TABLE,
  AUDIT_INSTANCE_TABLE,
  AUDIT_JOURNAL_TABLE,
  AUDIT_LOG_TABLE,
  AUDIT_SUBJECT_TABLE,
  AUDIT_TREE_TABLE,
} from '../audit.constants.js';
import { ownStatement } from './own-statements.js';
import type { RawTable } from './raw-statement.js';
import { MYSQL_DRIVERS } from '../storage/drivers.js';

/**
 * What a table named in raw SQL is: the entity whose rows it holds (for a many-to-many
 * junction table, the entity that owns the relation), `'unrecorded'` for tables whose
 * writes are never changes (the module's own, TypeORM's bookkeeping), or `'unknown'`.
 */
export type RawTableOwner = { entity: EntityMetadata; links: boolean } | 'unrecorded' | 'unknown';

/** Resolutions kept, at most: past it the cache starts over (apps with generated table names). */
const MAX_CACHED = 1000;
/** MySQL/MariaDB storage engines whose writes a ROLLBACK undoes (lower case). */
const TRANSACTIONAL_ENGINES = new Set(['innodb', 'rocksdb', 'tokudb', 'ndbcluster', 'ndb']);
/** How long the names of the tables that are not transactional are taken as read. */
const NAMES_FOR_MS = 60_000;

/**
 * Maps table names, as raw SQL writes them, to the data source's entities. Unquoted names
 * match in any case (PostgreSQL folds them to lower case, SQLite ignores it, MySQL and
 * MariaDB depend on the server's file system); quoted ones exactly, except on MySQL and
 * MariaDB, where quoting does not change how names compare. A schema or database part
 * narrows the match when the entity's own is known.
 */
export class RawTables {
  private byName?: Map<string, EntityMetadata[]>;
  private unrecorded?: Set<string>;
  private readonly cache = new Map<string, RawTableOwner>();
  /** MySQL/MariaDB: whether each table's engine is transactional, as read. */
  private readonly engines = new Map<string, boolean>();
  private readonly engineLookups = new Map<string, Promise<boolean>>();
  private nonTransactional?: { at: number; names: Set<string> };
  private nonTransactionalLookup?: Promise<Set<string>>;
  private readonly caseInsensitiveQuotes: boolean;

  constructor(private readonly dataSource: DataSource) {
    this.caseInsensitiveQuotes = MYSQL_DRIVERS.has(String(dataSource.options.type));
  }

  /** Whether the database reads `'…'` with backslash escapes and `#` comments. */
  get isMysql(): boolean {
    return this.caseInsensitiveQuotes;
  }

  /**
   * MySQL/MariaDB: whether every one of `tables` is of an engine whose writes a ROLLBACK
   * undoes (InnoDB; not MyISAM, Aria, MEMORY, …), read from `information_schema` once per
   * table. False for a table that cannot be read (`null`, a temporary table, a lookup that
   * failed, which is tried again next time).
   */
  transactional(tables: ReadonlyArray<RawTable | null>): boolean | Promise<boolean> {
    const lookups: Array<Promise<boolean>> = [];
    for (const table of tables) {
      if (!table) return false;
      const key = `${table.schema ?? ''}\u0000${table.name}`;
      const known = this.engines.get(key);
      if (known === false) return false;
      if (known === true) continue;
      let lookup = this.engineLookups.get(key);
      if (!lookup) {
        lookup = this.dataSource
          .query(`SELECT ENGINE AS engine FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`, ownStatement([table.schema ?? null, table.name]))
          .then((rows: Array<{ engine?: unknown }>) => {
            const transactional = TRANSACTIONAL_ENGINES.has(String(rows[0]?.engine ?? '').toLowerCase());
            if (this.engines.size >= MAX_CACHED) this.engines.clear();
            this.engines.set(key, transactional);
            return transactional;
          })
          .catch(() => false)
          .finally(() => this.engineLookups.delete(key));
        this.engineLookups.set(key, lookup);
      }
      lookups.push(lookup);
    }
    return lookups.length === 0 || Promise.all(lookups).then((all) => all.every(Boolean));
  }

  /**
   * MySQL/MariaDB: the names (lower case) of the tables and views of the connection's
   * database whose writes a ROLLBACK would not undo — every table but InnoDB (and the
   * like), every view — read from `information_schema` at most once a minute (one schema's
   * tables: a server's whole catalogue can take seconds to read). A name of the set in a
   * SQL text may be a write the statement reader missed: the text then runs as it is. A
   * table the text writes is also checked on its own, in its schema ({@link transactional}).
   * Rejects when it cannot be read.
   */
  nonTransactionalNames(): Set<string> | Promise<Set<string>> {
    const now = Date.now();
    if (this.nonTransactional && now - this.nonTransactional.at < NAMES_FOR_MS) return this.nonTransactional.names;
    this.nonTransactionalLookup ??= this.dataSource
      .query(
        `SELECT LOWER(TABLE_NAME) AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ` +
          `AND (ENGINE IS NULL OR LOWER(ENGINE) NOT IN (${[...TRANSACTIONAL_ENGINES].map((engine) => `'${engine}'`).join(', ')}))`,
        ownStatement([]),
      )
      .then((rows: Array<{ name: string }>) => {
        const names = new Set(rows.map((row) => String(row.name)));
        this.nonTransactional = { at: Date.now(), names };
        return names;
      })
      .finally(() => (this.nonTransactionalLookup = undefined));
    return this.nonTransactionalLookup;
  }

  owner(table: RawTable): RawTableOwner {
    const key = `${table.quoted ? '"' : ''}${table.schema ?? ''}\u0000${table.name}`;
    let owner = this.cache.get(key);
    if (owner === undefined) {
      owner = this.resolve(table);
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(key, owner);
    }
    return owner;
  }

  private resolve(table: RawTable): RawTableOwner {
    this.byName ??= this.index();
    this.unrecorded ??= this.bookkeepingTables();
    const lower = table.name.toLowerCase();
    const exact = table.quoted && !this.caseInsensitiveQuotes;
    let candidates = (this.byName.get(lower) ?? []).filter((metadata) => !exact || metadata.tableName === table.name);
    if (table.schema) {
      const schema = table.schema.toLowerCase();
      const inSchema = candidates.filter((metadata) => (metadata.schema ?? metadata.database)?.toLowerCase() === schema);
      candidates = inSchema.length ? inSchema : candidates.filter((metadata) => (metadata.schema ?? metadata.database) === undefined);
    }
    const metadata = candidates[0];
    if (!metadata) return this.unrecorded.has(lower) ? 'unrecorded' : 'unknown';
    if (metadata.tableType !== 'junction') return { entity: metadata, links: false };
    const owner = this.junctionOwner(metadata);
    return owner ? { entity: owner, links: true } : 'unrecorded';
  }

  private index(): Map<string, EntityMetadata[]> {
    const byName = new Map<string, EntityMetadata[]>();
    for (const metadata of this.dataSource.entityMetadatas) {
      const name = metadata.tableName.toLowerCase();
      byName.set(name, [...(byName.get(name) ?? []), metadata]);
    }
    return byName;
  }

  /** The module's tables and TypeORM's (migrations, view definitions, query cache): never changes. */
  private bookkeepingTables(): Set<string> {
    const options = this.dataSource.options as { migrationsTableName?: string; metadataTableName?: string; cache?: unknown };
    const cache = options.cache && typeof options.cache === 'object' ? (options.cache as { tableName?: string }).tableName : undefined;
    return new Set(
      [
        AUDIT_LOG_TABLE,
        AUDIT_JOURNAL_TABLE,
        AUDIT_INSTANCE_TABLE,
        AUDIT_SUBJECT_TABLE,
        AUDIT_TREE_TABLE,
        AUDIT_CHECKPOINT_TABLE,
        options.migrationsTableName ?? 'migrations',
        options.metadataTableName ?? 'typeorm_metadata',
        cache ?? 'query-result-cache',
      ].map((name) => name.toLowerCase()),
    );
  }

  /** The entity owning the many-to-many relation a junction table holds. */
  private junctionOwner(junction: EntityMetadata): EntityMetadata | undefined {
    for (const metadata of this.dataSource.entityMetadatas) {
      const relation = metadata.manyToManyRelations.find((candidate) => candidate.isOwning && candidate.junctionEntityMetadata === junction);
      if (relation) return metadata;
    }
    return undefined;
  }
}
