/**
 * The cause of an `AuditWriteError` when a unit's events were not stored within
 * `storeTimeout`: the audit database stopped answering (a network partition, a stalled
 * server). The store goes on: the events are stored once the database answers.
 */
export class AuditStoreTimeoutError extends Error {
  constructor(
    /** The `storeTimeout` option in force, in milliseconds. */
    readonly storeTimeout: number,
    /** Events of the unit. */
    readonly eventCount?: number,
  ) {
    super(`The audit events were not stored within ${storeTimeout} ms (storeTimeout); the audit database is not answering. They are stored once it answers`);
    this.name = 'AuditStoreTimeoutError';
  }
}
