import { Inject, Injectable } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import { inclusionProofOf, latestCheckpoint } from '../integrity/stored-proofs.js';
import { checkInclusion } from '../integrity/proofs.js';
import type { AuditEvent } from '../interfaces/audit-event.interface.js';
import type { AuditCheckpoint, AuditInclusionProof, AuditProofResult } from '../interfaces/audit-integrity.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { storedActorId } from './audit-query.js';
import { readEvents } from './read-events.js';

/** Where one event stands in the tamper-evident log, as read (never written) by the viewer. */
export type AuditInclusionStatus =
  | { state: 'off' }
  | { state: 'unsequenced' }
  | { state: 'uncovered'; seq: number; checkpoint: AuditCheckpoint | undefined }
  | { state: 'proved'; proof: AuditInclusionProof; verified: AuditProofResult }
  | { state: 'broken'; message: string };

/**
 * Reads one event, and its inclusion proof in the tree of the latest stored checkpoint,
 * without writing anything: unlike `AuditService.prove()`, an event that no checkpoint
 * covers yet is reported as such rather than sequenced and signed on the spot. Internal
 * (the viewer's read side).
 */
@Injectable()
export class AuditEventReader {
  constructor(
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly builder: AuditEventBuilder,
  ) {}

  /**
   * The event with this id (a UUID) and its inclusion status, from one read of its row (so
   * the status is that of the row shown), or `undefined` when there is no such event.
   * The status: integrity off, not sequenced yet, sequenced but past the latest
   * checkpoint, or its proof, checked with `verifyInclusion` against the configured public
   * keys (the stored row must hash to its leaf).
   */
  async read(id: string): Promise<{ event: AuditEvent; inclusion: AuditInclusionStatus } | undefined> {
    // Ids are stored in lower case; a UUID is the same id in either case. Read as find() reads
    // (a row changed by hand is shown with what cannot be read of it, not failed).
    const query = this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.id = :id', { id: id.toLowerCase() });
    const [found] = await readEvents(query, this.builder);
    return found ? { event: found.event, inclusion: await this.inclusion(found.row) } : undefined;
  }

  private async inclusion(row: AuditLogEntity): Promise<AuditInclusionStatus> {
    const integrity = this.options.integrity;
    if (!integrity) return { state: 'off' };
    if (row.seq === null || row.seq === undefined) return { state: 'unsequenced' };
    const manager = this.dataSource.manager;
    try {
      // A checkpoint row whose columns disagree with its note is an integrity problem to show, not an error.
      const checkpoint = await latestCheckpoint(manager);
      if (!checkpoint || checkpoint.treeSize < row.seq) return { state: 'uncovered', seq: row.seq, checkpoint };
      const proof = await inclusionProofOf(manager, row, checkpoint);
      return { state: 'proved', proof, verified: checkInclusion(proof, integrity.publicKeys, row) };
    } catch (error) {
      if (error instanceof AuditIntegrityError) return { state: 'broken', message: error.message };
      // A row changed by hand whose values cannot be hashed (a time that is none).
      if (error instanceof TypeError) return { state: 'broken', message: `the stored row cannot be hashed as an event (${error.message}): verify() reports it as modified` };
      throw error;
    }
  }

  /**
   * The actor id `audit_log` stores for a clear one (its pseudonym with `pseudonymize` on;
   * `null` when that actor's key is gone).
   * @throws InvalidAuditQueryError for a clear id without its type when ids are pseudonymised.
   */
  storedActorId(id: string, type: string | undefined): string | null {
    return storedActorId(id, type, this.options.pseudonymizer);
  }
}
