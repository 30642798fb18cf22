import type { JournalActor } from '../events/actor-pseudonyms.js';
import type { AuditChange, AuditRequestInfo } from '../interfaces/audit-event.interface.js';

/** A change as kept in the journal: an audit change plus when it was first captured (ms). */
export interface JournalChange extends AuditChange {
  at: number;
  deleteDateField?: string;
}

/**
 * What one journal row holds: the net changes one transaction made for one unit of work
 * and the unit's attribution as known at the commit, enough to build the unit's events
 * if the process dies before it stores them.
 */
export interface JournalEntry {
  source: string;
  request: AuditRequestInfo;
  /**
   * The actor, when it was already resolved at the commit: as `audit_log` stores it
   * (pseudonymised, when configured: the journal never holds a clear id then).
   */
  actor?: JournalActor;
  /** The `@Audited` action of the unit, if it has one. */
  action?: string;
  /** Work that ran after its request's unit ended: that request's id. */
  originRequestId?: string;
  changes: JournalChange[];
  /** The unit keeps these changes only here (there were too many to keep in memory). */
  spilled?: true;
  /**
   * A marker in the audit data source's journal: the unit's events are stored, and its
   * journal rows in another data source are being deleted. Holds no changes.
   */
  stored?: true;
}

/** The entry of a marker row (see `JournalEntry.stored`). */
export const MARKER_ENTRY: JournalEntry = { source: 'system', request: {}, changes: [], stored: true };
