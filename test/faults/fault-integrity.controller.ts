import { writeSync } from 'node:fs';
import { Controller, Get, HttpCode, Post } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { Logger as TypeOrmLogger } from 'typeorm';
import { AuditService, type AuditCheckpoint } from '../../lib/index.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';

/** `GET /integrity/stats`: what this instance's integrator did. */
export interface FaultIntegratorStats {
  /** Batches this instance stored, events it sequenced, and when its last batch committed (ms since the epoch; 0: none). */
  batches: number;
  sequenced: number;
  lastBatchAt: number;
  pid: number;
}

/** The line an armed instance prints just before it kills itself inside a batch. */
export const KILLED_IN_BATCH = 'KILLED-IN-BATCH';

/** Armed by `POST /integrity/kill-in-batch`. */
let killInBatch = false;

/**
 * The fault app's TypeORM logger when integrity is on: silent, except that once armed, it
 * sends SIGKILL to its own process when the integrator is about to write the tree nodes
 * of a batch, i.e. inside the batch's transaction, after its `seq` update and before its
 * nodes and checkpoint are written, with the integrator lock held. The signal is the one
 * `kill -9` sends; only the moment is chosen from inside.
 */
export class KillInBatchLogger implements TypeOrmLogger {
  logQuery(query: string): void {
    if (!killInBatch || !/^INSERT INTO \S*audit_tree\W/.test(query)) return;
    writeSync(1, `${KILLED_IN_BATCH} pid ${process.pid}: SIGKILL before ${query.slice(0, 60)}…\n`);
    process.kill(process.pid, 'SIGKILL');
  }
  logQueryError(): void {}
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(): void {}
}

/** Routes the many-instance integrity scenario uses to watch and break the integrator (not audited). */
@Controller('integrity')
export class FaultIntegrityController {
  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly audit: AuditService,
  ) {}

  @Get('stats')
  stats(): FaultIntegratorStats {
    return { ...this.moduleRef.get(AuditIntegrator, { strict: false }).stats, pid: process.pid };
  }

  /** Arms {@link KillInBatchLogger}: this instance dies inside its next batch that sequences something. */
  @Post('kill-in-batch')
  @HttpCode(202)
  arm(): { armed: true; pid: number } {
    killInBatch = true;
    return { armed: true, pid: process.pid };
  }

  /** `AuditService.checkpoint()`: sequences everything stored and signs the whole tree. */
  @Post('checkpoint')
  @HttpCode(200)
  checkpoint(): Promise<AuditCheckpoint> {
    return this.audit.checkpoint();
  }
}
