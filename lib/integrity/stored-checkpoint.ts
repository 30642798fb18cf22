import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import type { AuditCheckpoint } from '../interfaces/audit-integrity.interface.js';
import type { AuditCheckpointEntity } from '../storage/audit-checkpoint.entity.js';
import { checkpointOfNote, type Checkpoint } from './checkpoint-note.js';

/**
 * A stored checkpoint as its signed note gives it: the tree size and root the signature
 * covers, never the row's `tree_size` and `root_hash` columns (copies kept for queries,
 * which an administrator can change without the note).
 *
 * @throws AuditIntegrityError when the note is not a checkpoint, or is of another tree size than its row.
 */
export function checkpointOfRow(row: AuditCheckpointEntity): AuditCheckpoint {
  let signed: Checkpoint;
  try {
    signed = checkpointOfNote(row.note);
  } catch (error) {
    throw new AuditIntegrityError(`checkpoint ${row.treeSize} in audit_checkpoint is not a valid checkpoint note: ${(error as Error).message}`);
  }
  if (signed.treeSize !== BigInt(row.treeSize)) {
    throw new AuditIntegrityError(`checkpoint ${row.treeSize} in audit_checkpoint holds the note of tree size ${signed.treeSize}: the row was altered`);
  }
  return { treeSize: row.treeSize, rootHash: signed.rootHash.toString('base64'), note: row.note };
}
