import { Inject, Injectable } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { AUDIT_DATA_SOURCE } from '../audit.constants.js';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import type { AuditCheckpoint, AuditConsistencyProof, AuditInclusionProof } from '../interfaces/audit-integrity.interface.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { findOneQuietly } from '../storage/quiet-find.js';
import { checkpointOfNote } from './checkpoint-note.js';
import { AuditIntegrator } from './integrator.js';
import { inclusionProofOf, latestCheckpoint } from './stored-proofs.js';
import { TreeStore } from './tree-store.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Inclusion and consistency proofs from the stored tree (O(log n) reads each). */
@Injectable()
export class IntegrityProofs {
  private readonly tree = new TreeStore();

  constructor(
    private readonly integrator: AuditIntegrator,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
  ) {}

  /**
   * The inclusion proof of event `given` (its id, in either case) in the tree of the latest checkpoint (sequencing
   * the event and signing a checkpoint first when none covers it yet).
   */
  async prove(given: string): Promise<AuditInclusionProof> {
    this.integrator.requireIntegrity();
    if (typeof given !== 'string' || !UUID.test(given)) throw new AuditIntegrityError(`prove() needs an event id (a UUID), got ${JSON.stringify(given)}`);
    const events = this.dataSource.getRepository(AuditLogEntity);
    // Ids are stored in lower case; a UUID is the same id in either case.
    const id = given.toLowerCase();
    let row = await findOneQuietly(events, { where: { id } });
    if (!row) throw new AuditIntegrityError(`no event ${id} in audit_log`);
    let checkpoint = await this.latest();
    if (row.seq === null || !checkpoint || checkpoint.treeSize < row.seq) {
      checkpoint = await this.integrator.checkpoint();
      row = await findOneQuietly(events, { where: { id } });
      if (!row || row.seq === null) throw new AuditIntegrityError(`event ${id} could not be sequenced (see the log)`);
    }
    return inclusionProofOf(this.dataSource.manager, row, checkpoint);
  }

  /**
   * The consistency proof from the tree of one checkpoint to a later one's (each a tree
   * size, a checkpoint, or a note).
   */
  async proveConsistency(older: number | AuditCheckpoint | string, newer: number | AuditCheckpoint | string): Promise<AuditConsistencyProof> {
    this.integrator.requireIntegrity();
    const oldSize = sizeOf(older, 'older');
    const newSize = sizeOf(newer, 'newer');
    if (oldSize > newSize) throw new AuditIntegrityError(`the older checkpoint (tree size ${oldSize}) is larger than the newer one (${newSize})`);
    const size = await this.tree.size(this.dataSource.manager);
    if (newSize > size) throw new AuditIntegrityError(`the tree holds ${size} events, fewer than ${newSize}`);
    const path = await this.tree.consistencyPath(this.dataSource.manager, oldSize, newSize);
    return { oldSize, newSize, path: path.map((hash) => hash.toString('base64')) };
  }

  private latest(): Promise<AuditCheckpoint | undefined> {
    return latestCheckpoint(this.dataSource.manager);
  }
}

function sizeOf(value: number | AuditCheckpoint | string, name: string): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new AuditIntegrityError(`${name} must be a tree size (a whole number of 0 or more), got ${value}`);
    return value;
  }
  if (typeof value === 'string') {
    try {
      return Number(checkpointOfNote(value).treeSize);
    } catch (error) {
      throw new AuditIntegrityError(`${name} is not a checkpoint note: ${(error as Error).message}`);
    }
  }
  if (value && typeof value === 'object' && Number.isSafeInteger(value.treeSize)) return value.treeSize;
  throw new AuditIntegrityError(`${name} must be a tree size, a checkpoint or a checkpoint note`);
}
