/** One field of an audit event input that failed validation. */
export interface AuditFieldProblem {
  field: string;
  problems: string[];
}

/** Thrown by `AuditService.log()` for bad input; nothing is written. */
export class InvalidAuditEventError extends Error {
  /** The fields at fault, for example `['action']`. */
  readonly fields: string[];

  constructor(readonly problems: AuditFieldProblem[]) {
    super(`Invalid audit event: ${problems.map((p) => `${p.field}: ${p.problems.join('; ')}`).join(' | ')}`);
    this.name = 'InvalidAuditEventError';
    this.fields = problems.map((p) => p.field);
  }
}
