import type { DataSource } from 'typeorm';
import { AuditCheckpointEntity } from '../storage/audit-checkpoint.entity.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditTreeEntity } from '../storage/audit-tree.entity.js';
import { bindUtcDates } from '../storage/utc-date.transformer.js';
import { canonicalEventJson } from './canonical-json.js';
import type { AuditLogData, AuditLogSourceEvent, AuditLogSourceLeaf } from './log-verifier.js';
import { leafHash } from './merkle.js';

/** Rows read per query. */
const PAGE_SIZE = 2_000;

/**
 * Reads an audit log from its database for the verifier: the sequenced events of
 * `audit_log`, the leaves of `audit_tree` and the notes of `audit_checkpoint`, each in
 * ascending order, page by page (keyset pagination on `seq`, `idx` and `tree_size`: no
 * OFFSET, so every page costs the same). Rows are read through the module's entities,
 * so table names follow the data source's `entityPrefix` and `schema`, JSON columns and
 * dates come back as the entities' types, and the same code serves PostgreSQL,
 * MySQL/MariaDB and SQLite.
 *
 * The data source must list the module's entities (`AuditEntities`); its date columns
 * are bound to UTC (`bindUtcDates`) here.
 */
export class DatabaseLogSource {
  constructor(
    private readonly dataSource: DataSource,
    private readonly pageSize = PAGE_SIZE,
  ) {
    bindUtcDates(dataSource);
  }

  /** Events, stored leaves and stored checkpoints, for `verifyLog`. */
  data(): AuditLogData {
    return { events: this.events(), leaves: this.leaves(), checkpoints: this.checkpoints() };
  }

  /** The number of sequenced events (for progress). */
  async countEvents(): Promise<number> {
    return this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.seq IS NOT NULL').getCount();
  }

  /** Every sequenced event row, ascending by `seq`. */
  async *eventRows(): AsyncGenerator<AuditLogEntity> {
    const repository = this.dataSource.getRepository(AuditLogEntity);
    let after: number | undefined;
    for (;;) {
      const query = repository.createQueryBuilder('e').where('e.seq IS NOT NULL');
      if (after !== undefined) query.andWhere('e.seq > :after', { after });
      const rows = await query.orderBy('e.seq', 'ASC').limit(this.pageSize).getMany();
      yield* rows;
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.seq!;
    }
  }

  /** Every sequenced event with the hash of its canonical JSON, ascending by `seq`. */
  async *events(): AsyncGenerator<AuditLogSourceEvent> {
    for await (const row of this.eventRows()) yield { seq: row.seq!, id: row.id, leafHash: eventLeafHash(row) };
  }

  /** Every stored leaf (level 0 of `audit_tree`), ascending by index. */
  async *leaves(): AsyncGenerator<AuditLogSourceLeaf> {
    const repository = this.dataSource.getRepository(AuditTreeEntity);
    let after: number | undefined;
    for (;;) {
      const query = repository.createQueryBuilder('t').where('t.level = 0');
      if (after !== undefined) query.andWhere('t.index > :after', { after });
      const rows = await query.orderBy('t.index', 'ASC').limit(this.pageSize).getMany();
      for (const row of rows) yield { index: row.index, hash: storedHash(row.hash), eventId: row.eventId };
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.index;
    }
  }

  /** Every stored checkpoint note, ascending by tree size. */
  async *checkpoints(): AsyncGenerator<string> {
    const repository = this.dataSource.getRepository(AuditCheckpointEntity);
    let after: number | undefined;
    for (;;) {
      const query = repository.createQueryBuilder('c').select(['c.treeSize', 'c.note']);
      if (after !== undefined) query.where('c.treeSize > :after', { after });
      const rows = await query.orderBy('c.treeSize', 'ASC').limit(this.pageSize).getMany();
      for (const row of rows) yield row.note;
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.treeSize;
    }
  }

  /** One event by id, sequenced or not. */
  async findEvent(id: string): Promise<AuditLogEntity | null> {
    return this.dataSource.getRepository(AuditLogEntity).findOneBy({ id });
  }
}

/** The leaf hash of a row as stored now; empty (matching nothing) when the row cannot be canonicalised. */
export function eventLeafHash(row: AuditLogEntity): Buffer {
  try {
    return leafHash(Buffer.from(canonicalEventJson(row), 'utf8'));
  } catch {
    return Buffer.alloc(0);
  }
}

/** A stored hex hash; text that is not 64 hex digits becomes bytes that match no hash. */
function storedHash(hex: string): Buffer {
  return /^[0-9a-f]{64}$/i.test(hex) ? Buffer.from(hex, 'hex') : Buffer.from(`not a hash: ${hex}`, 'utf8');
}
