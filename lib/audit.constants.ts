/** Metadata key written by `@Audited()`. */
export const AUDITED_METADATA = 'audit:audited';
/** Metadata key written by `@AuditSource()`. */
export const AUDIT_SOURCE_METADATA = 'audit:source';
/** Resolved (defaults merged, validated) module options. Internal. */
export const AUDIT_RESOLVED_OPTIONS = Symbol('AUDIT:RESOLVED_OPTIONS');
/** The TypeORM data source the module writes to and watches. Internal. */
export const AUDIT_DATA_SOURCE = Symbol('AUDIT:DATA_SOURCE');
/** Name of the table that holds the audit trail. */
export const AUDIT_LOG_TABLE = 'audit_log';
/** Name of the table that holds committed changes whose events are not stored yet. */
export const AUDIT_JOURNAL_TABLE = 'audit_journal';
/** Name of the table that indexes each event by every entity instance it is about. */
export const AUDIT_SUBJECT_TABLE = 'audit_subject';
/** Name of the table that holds the leases of running app instances. */
export const AUDIT_INSTANCE_TABLE = 'audit_instance';
/** Marker put on a request once its unit of work is attached. Internal. */
export const AUDIT_UNIT_OF_WORK = Symbol.for('nestjs-system-audit:unit-of-work');
/** Name of the table that holds the nodes of the Merkle tree over `audit_log` (integrity). */
export const AUDIT_TREE_TABLE = 'audit_tree';
/** Name of the table that holds the signed checkpoints of the Merkle tree (integrity). */
export const AUDIT_CHECKPOINT_TABLE = 'audit_checkpoint';
