/**
 * Thrown when a checkpoint cannot be written or read in the C2SP tlog-checkpoint
 * format: an empty origin, a tree size that is not a non-negative integer, a root hash
 * that is not 32 bytes, an empty extension line, and so on.
 */
export class MalformedCheckpointError extends Error {
  constructor(
    /** What is wrong, for example `tree size "012" has a leading zero`. */
    readonly problem: string,
  ) {
    super(`Malformed checkpoint: ${problem}`);
    this.name = 'MalformedCheckpointError';
  }
}
