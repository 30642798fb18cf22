import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { AUDIT_TREE_TABLE } from '../audit.constants.js';
import { BIGINT_NUMBER } from './bigint-number.transformer.js';

/**
 * One node of the Merkle tree over `audit_log` (kept when `integrity` is configured): the
 * hash of the perfect subtree of `2^level` leaves that starts at leaf `index * 2^level`.
 * Level 0 holds the leaf hashes, each naming its event; a node is stored once all its
 * leaves are, so any inclusion or consistency proof reads O(log n) rows. Rows are never
 * updated, and stay when events are purged.
 */
@Entity(AUDIT_TREE_TABLE)
// One leaf per event (AddAuditTreeEventIndex1796601600000); inner nodes name none.
@Index('idx_audit_tree_event', ['eventId'], { unique: true })
export class AuditTreeEntity {
  @PrimaryColumn({ type: 'int' })
  level!: number;

  /** The node's position in its level, from 0. A leaf's index is its event's `seq - 1`. */
  @PrimaryColumn({ name: 'idx', type: 'bigint', transformer: BIGINT_NUMBER })
  index!: number;

  /** SHA-256, lower-case hex. */
  @Column({ type: 'varchar', length: 64 })
  hash!: string;

  /** The event a leaf covers (level 0 only). */
  @Column({ name: 'event_id', type: 'uuid', nullable: true })
  eventId!: string | null;
}
