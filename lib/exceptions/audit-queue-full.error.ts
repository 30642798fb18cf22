/**
 * Thrown to a caller whose audit events found no room in the writer's queue within
 * `queueTimeout`: the audit database is slower than events arrive, or unreachable. In
 * fail-closed mode the request or job fails with it (wrapped in `AuditWriteError`).
 */
export class AuditQueueFullError extends Error {
  constructor(
    /** Events of the caller that was turned away. */
    readonly eventCount: number,
    /** The `maxQueuedEvents` option in force. */
    readonly maxQueuedEvents: number,
    /** The `queueTimeout` option in force, in milliseconds. */
    readonly queueTimeout: number,
  ) {
    super(
      `The audit writer's queue is full: ${eventCount} audit event(s) waited ${queueTimeout} ms (queueTimeout) ` +
        `for room among at most ${maxQueuedEvents} queued events (maxQueuedEvents); the audit database is slower ` +
        'than events arrive, or unreachable',
    );
    this.name = 'AuditQueueFullError';
  }
}
