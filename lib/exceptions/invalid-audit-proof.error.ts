/**
 * Thrown by `verifyInclusion` and `verifyConsistency` when the proof given is not a proof
 * at all: a missing member, a size that is not a non-negative integer, a hash that is
 * not the base64 of 32 bytes. A well-formed proof that does not check out is not an
 * error: it gives `{ ok: false, reason }`.
 */
export class InvalidAuditProofError extends Error {
  constructor(
    /** What is wrong, for example `path[2] is not the base64 of a 32-byte hash`. */
    readonly problem: string,
  ) {
    super(`Invalid audit proof: ${problem}`);
    this.name = 'InvalidAuditProofError';
  }
}
