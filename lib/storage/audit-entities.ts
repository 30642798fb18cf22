import { AuditCheckpointEntity } from './audit-checkpoint.entity.js';
import { AuditInstanceEntity } from './audit-instance.entity.js';
import { AuditJournalEntity } from './audit-journal.entity.js';
import { AuditLogEntity } from './audit-log.entity.js';
import { AuditSubjectEntity } from './audit-subject.entity.js';
import { AuditTreeEntity } from './audit-tree.entity.js';

/**
 * Every entity of the audit module: list them in your data source's `entities` (or use
 * `autoLoadEntities: true`).
 *
 * @example
 * TypeOrmModule.forRoot({ type: 'postgres', url, entities: [...AuditEntities, Order] })
 */
export const AuditEntities = [AuditLogEntity, AuditSubjectEntity, AuditJournalEntity, AuditInstanceEntity, AuditTreeEntity, AuditCheckpointEntity] as const;
