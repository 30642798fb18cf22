/** Thrown at start-up when an option of `AuditModule` (or `AuditViewerModule`) is invalid. */
export class InvalidAuditOptionsError extends Error {
  constructor(
    /** The option at fault, for example `trustProxy`. */
    readonly option: string,
    problem: string,
    /** The module the option belongs to. */
    readonly moduleName: 'AuditModule' | 'AuditViewerModule' = 'AuditModule',
  ) {
    super(`Invalid ${moduleName} option "${option}": ${problem}`);
    this.name = 'InvalidAuditOptionsError';
  }
}
