import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { AUDIT_SUBJECT_TABLE } from '../audit.constants.js';
import { UTC_DATE_COLUMN } from './utc-date.transformer.js';

/**
 * One row of `audit_subject` per entity instance an event is about besides its target:
 * every instance its `changes` touch, and the instances a many-to-many change links or
 * unlinks (an article favourited from the user's side of the link). Written with the
 * event, in the same transaction, skipped when already there (a retried event). With
 * `audit_log`'s target index, `AuditService.history()` finds through it every event about
 * a resource, whichever instance the event's target names.
 */
@Entity(AUDIT_SUBJECT_TABLE)
@Index('idx_audit_subject_history', ['subjectType', 'subjectId', 'occurredAt', 'eventId'])
@Index('idx_audit_subject_event', ['eventId'])
export class AuditSubjectEntity {
  /** The entity name (`Article`) or the type the event's target gives (`article`). */
  @PrimaryColumn({ name: 'subject_type', type: 'varchar', length: 128 })
  subjectType!: string;

  @PrimaryColumn({ name: 'subject_id', type: 'varchar', length: 255 })
  subjectId!: string;

  /** The `audit_log` row's id. */
  @PrimaryColumn({ name: 'event_id', type: 'uuid' })
  eventId!: string;

  /** The event's `occurred_at`, so that a resource's events are read in order from this table alone. */
  @Column({ name: 'occurred_at', type: Date, precision: 3, transformer: UTC_DATE_COLUMN })
  occurredAt!: Date;
}
