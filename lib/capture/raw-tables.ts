import type { DataSource, EntityMetadata } from 'typeorm';
import {
  AUDIT_CHECKPOINT_TABLE,
  AUDIT_INSTANCE_TABLE,
  AUDIT_JOURNAL_TABLE,
  AUDIT_LOG_TABLE,
  AUDIT_SUBJECT_TABLE,
  AUDIT_TREE_TABLE,
} from '../audit.constants.js';
import type { RawTable } from './raw-statement.js';

/**
 * What a table named in raw SQL is: the entity whose rows it holds (for a many-to-many
 * junction table, the entity that owns the relation), `'unrecorded'` for tables whose
 * writes are never changes (the module's own, TypeORM's bookkeeping), or `'unknown'`.
 */
export type RawTableOwner = { entity: EntityMetadata; links: boolean } | 'unrecorded' | 'unknown';

const MYSQL = new Set(['mysql', 'mariadb', 'aurora-mysql']);
/** Resolutions kept, at most: past it the cache starts over (apps with generated table names). */
const MAX_CACHED = 1000;

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
  private readonly caseInsensitiveQuotes: boolean;

  constructor(private readonly dataSource: DataSource) {
    this.caseInsensitiveQuotes = MYSQL.has(String(dataSource.options.type));
  }

  /** Whether the database reads `'…'` with backslash escapes and `#` comments. */
  get isMysql(): boolean {
    return this.caseInsensitiveQuotes;
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
