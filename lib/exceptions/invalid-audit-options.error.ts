/** Thrown at start-up when an `AuditModule` option is invalid. */
export class InvalidAuditOptionsError extends Error {
  constructor(
    /** The option at fault, for example `trustProxy`. */
    readonly option: string,
    problem: string,
  ) {
    super(`Invalid AuditModule option "${option}": ${problem}`);
    this.name = 'InvalidAuditOptionsError';
  }
}
