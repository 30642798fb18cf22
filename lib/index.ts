export { AuditModule } from './audit.module.js';
export { AUDIT_MODULE_OPTIONS } from './audit.module-definition.js';
export {
  AUDIT_LOG_TABLE,
  AUDIT_SUBJECT_TABLE,
  AUDIT_JOURNAL_TABLE,
  AUDIT_INSTANCE_TABLE,
  AUDIT_TREE_TABLE,
  AUDIT_CHECKPOINT_TABLE,
} from './audit.constants.js';
export { Audited, type AuditedCallContext, type AuditedMetadata, type AuditedOptions } from './decorators/audited.decorator.js';
export { AuditSource } from './decorators/audit-source.decorator.js';
export { AuditExclude } from './decorators/audit-exclude.decorator.js';
export { AuditService } from './service/audit.service.js';
export { AuditLogEntity } from './storage/audit-log.entity.js';
export { AuditSubjectEntity } from './storage/audit-subject.entity.js';
export { AuditJournalEntity } from './storage/audit-journal.entity.js';
export { AuditInstanceEntity } from './storage/audit-instance.entity.js';
export { AuditTreeEntity } from './storage/audit-tree.entity.js';
export { AuditCheckpointEntity } from './storage/audit-checkpoint.entity.js';
export { AuditEntities } from './storage/audit-entities.js';
export { bindUtcDates } from './storage/utc-date.transformer.js';
export {
  AuditMigrations,
  CreateAuditLog1764201600000,
  CreateAuditJournal1764979200000,
  CreateAuditSubject1765584000000,
  AddAuditIntegrity1766188800000,
  AuditAppendOnly1766275200000,
  AuditReadIndexes1766361600000,
  AddAuditSubjectEventIndex1766448000000,
  AddAuditRequestActorIndexes1767312000000,
  AddAuditTreeEventIndex1796601600000,
} from './storage/migrations/index.js';
export {
  partitionAuditLog,
  unpartitionAuditLog,
  createAuditPartitions,
  listAuditPartitions,
  PartitionAuditLogMonthly1767225600000,
  type AuditPartitionOptions,
  type AuditPartitionsResult,
  type AuditLogPartition,
} from './storage/audit-partitions.js';
export { AuditPartitionError } from './exceptions/audit-partition.error.js';
export { AUDIT_ACTION_PATTERN, isValidAuditAction } from './events/audit-action.js';
export { REDACTED, DEFAULT_REDACTED_FIELDS } from './events/redaction.js';
export { PSEUDONYM_PREFIX } from './events/actor-pseudonyms.js';
export { InvalidAuditEventError, type AuditFieldProblem } from './exceptions/invalid-audit-event.error.js';
export { InvalidAuditOptionsError } from './exceptions/invalid-audit-options.error.js';
export { InvalidAuditActionError } from './exceptions/invalid-audit-action.error.js';
export { InvalidAuditQueryError } from './exceptions/invalid-audit-query.error.js';
export { AuditWriteError } from './exceptions/audit-write.error.js';
export { AuditQueueFullError } from './exceptions/audit-queue-full.error.js';
export { AuditStoreTimeoutError } from './exceptions/audit-store-timeout.error.js';
export { AuditUnitRecoveredError } from './exceptions/audit-unit-recovered.error.js';
export { InvalidAuditProofError } from './exceptions/invalid-audit-proof.error.js';
export { InvalidNoteKeyError } from './exceptions/invalid-note-key.error.js';
export { MalformedAuditExportError } from './exceptions/malformed-audit-export.error.js';
export { verifyInclusion, verifyConsistency, checkInclusion, checkConsistency, verifiersFor, type AuditInclusionProofWithNote } from './integrity/proofs.js';
export { fileAnchor, readCheckpointsFile } from './integrity/file-anchor.js';
export { exportEventLine } from './integrity/jsonl-log-source.js';
export type * from './interfaces/audit-event.interface.js';
export type * from './interfaces/audit-module-options.interface.js';
export type * from './interfaces/audit-service.interface.js';
export type * from './interfaces/audit-integrity.interface.js';
export { AuditIntegrityError } from './exceptions/audit-integrity.error.js';
export type * from './transports/transport-request.interface.js';
export { AuditViewerModule } from './viewer/audit-viewer.module.js';
export type * from './interfaces/audit-viewer-options.interface.js';
