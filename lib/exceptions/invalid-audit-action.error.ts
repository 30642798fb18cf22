/** Thrown when an action name is not a dotted lower-case name. */
export class InvalidAuditActionError extends Error {
  constructor(readonly action: unknown) {
    super(
      `Invalid audit action ${JSON.stringify(action)}: use a dotted lower-case name, e.g. "order.updated"`,
    );
    this.name = 'InvalidAuditActionError';
  }
}
