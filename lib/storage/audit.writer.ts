import { Inject, Injectable } from '@nestjs/common';
import type { DataSource, EntityManager, ObjectLiteral } from 'typeorm';
import { AUDIT_DATA_SOURCE } from '../audit.constants.js';
import { AuditLogEntity } from './audit-log.entity.js';

const ROWS_PER_STATEMENT = 500;

/**
 * Stores audit rows: one multi-row INSERT per batch, listeners off (the audit table
 * is never captured). Given a manager, it writes inside that manager's transaction.
 */
@Injectable()
export class AuditWriter {
  constructor(@Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource) {}

  async write(rows: readonly AuditLogEntity[], manager?: EntityManager): Promise<void> {
    const target = manager ?? this.dataSource.manager;
    for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
      await target
        .createQueryBuilder()
        .insert()
        .into(AuditLogEntity)
        .values(rows.slice(start, start + ROWS_PER_STATEMENT) as ObjectLiteral[])
        .updateEntity(false)
        .callListeners(false)
        .execute();
    }
  }
}
