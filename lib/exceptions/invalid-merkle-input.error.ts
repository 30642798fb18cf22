/**
 * Thrown by the Merkle tree functions for an argument no tree can have: a leaf index
 * that is not below the tree size, an older tree larger than the newer one, a size that
 * is not a non-negative safe integer, a hash that is not 32 bytes.
 *
 * A proof that merely does not match (a tampered hash, a wrong root) is not an error:
 * the verifiers return `false` for it.
 */
export class InvalidMerkleInputError extends Error {
  constructor(
    readonly parameter: string,
    problem: string,
  ) {
    super(`Invalid Merkle tree input: ${parameter} ${problem}`);
    this.name = 'InvalidMerkleInputError';
  }
}
