/**
 * Thrown by `AuditService.checkpoint()`, `prove()` and `proveConsistency()` when tamper
 * evidence cannot answer: `integrity` is not configured, the event does not exist, or the
 * stored tree or checkpoints were altered (no checkpoint is signed over them).
 */
export class AuditIntegrityError extends Error {
  constructor(message: string) {
    super(`Audit integrity: ${message}`);
    this.name = 'AuditIntegrityError';
  }
}
