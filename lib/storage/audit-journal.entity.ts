import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { AUDIT_JOURNAL_TABLE } from '../audit.constants.js';
import type { JournalEntry } from '../journal/journal-entry.js';
import { UTC_DATE_COLUMN } from './utc-date.transformer.js';

/**
 * One row of `audit_journal`: the net changes one transaction made for one unit of work,
 * written inside that transaction so that it commits and rolls back with the changes.
 * Deleted, in the same transaction that stores the unit's events in `audit_log`; rows of
 * an instance that died are turned into events by recovery.
 */
@Entity(AUDIT_JOURNAL_TABLE)
@Index('idx_audit_journal_unit', ['unitId'])
@Index('idx_audit_journal_instance', ['instanceId', 'createdAt'])
export class AuditJournalEntity {
  /** UUID v7: sorts by time. */
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** The unit of work the changes belong to. */
  @Column({ name: 'unit_id', type: 'uuid' })
  unitId!: string;

  /** The app instance (process) that wrote the row. */
  @Column({ name: 'instance_id', type: 'uuid' })
  instanceId!: string;

  @Column({ name: 'created_at', type: Date, precision: 3, transformer: UTC_DATE_COLUMN })
  createdAt!: Date;

  /** The transaction's net changes and the unit's attribution as known at commit. */
  @Column({ type: 'json' })
  entry!: JournalEntry;
}
