/**
 * Thrown (fail-closed mode) when audit events could not be stored. The request or
 * job that produced them fails with it; the cause is in `cause`.
 */
export class AuditWriteError extends Error {
  constructor(
    readonly eventCount: number,
    cause: unknown,
  ) {
    super(
      `Could not store ${eventCount} audit event(s): ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
    this.name = 'AuditWriteError';
  }
}
