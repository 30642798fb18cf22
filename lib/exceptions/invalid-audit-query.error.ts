/** Thrown by `AuditService.find()` / `history()` / `export()` for a filter (or export format) it cannot use. */
export class InvalidAuditQueryError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`Invalid audit query: ${field} ${problem}`);
    this.name = 'InvalidAuditQueryError';
  }
}
