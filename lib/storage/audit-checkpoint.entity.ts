import { Column, Entity, PrimaryColumn } from 'typeorm';
import { AUDIT_CHECKPOINT_TABLE } from '../audit.constants.js';
import { BIGINT_NUMBER } from './bigint-number.transformer.js';
import { UTC_DATE_COLUMN } from './utc-date.transformer.js';

/**
 * One signed checkpoint of the Merkle tree over `audit_log`: the tree's size and root hash
 * in a signed note (C2SP tlog-checkpoint format, Ed25519). Each one extends the one
 * before; rows are never updated.
 */
@Entity(AUDIT_CHECKPOINT_TABLE)
export class AuditCheckpointEntity {
  /** The number of events (leaves) the checkpoint covers: seq 1 to `treeSize`. */
  @PrimaryColumn({ name: 'tree_size', type: 'bigint', transformer: BIGINT_NUMBER })
  treeSize!: number;

  /** SHA-256 root hash of the tree of that size, lower-case hex (the note holds it in base64). */
  @Column({ name: 'root_hash', type: 'varchar', length: 64 })
  rootHash!: string;

  /** The signed note, as handed to `anchor`. */
  @Column({ type: 'text' })
  note!: string;

  @Column({ name: 'created_at', type: Date, precision: 3, transformer: UTC_DATE_COLUMN })
  createdAt!: Date;
}
