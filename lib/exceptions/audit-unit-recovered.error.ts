/**
 * Thrown to a unit of work whose journal rows were no longer all there when its events
 * were to be stored: another instance took this one for dead (its lease had not been
 * renewed for `recoverAfter`: the process was paused, its event loop blocked, its lease
 * renewal stuck) and recovered the unit from its journal, as an intent with `outcome:
 * 'unknown'` or as fallback events. Nothing of the unit is stored a second time. In
 * fail-closed mode the request or job fails with it (wrapped in `AuditWriteError`): the
 * trail holds the recovered record, not the one of the unit's own outcome.
 */
export class AuditUnitRecoveredError extends Error {
  constructor(
    /** Events of the unit that were not stored. */
    readonly eventCount: number,
  ) {
    super(
      `${eventCount} audit event(s) were not stored: another instance recovered their unit of work from the journal ` +
        '(this instance\'s lease looked older than recoverAfter), and its record is that one',
    );
    this.name = 'AuditUnitRecoveredError';
  }
}
