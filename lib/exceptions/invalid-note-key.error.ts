/**
 * Thrown when a key given to sign or verify notes is unusable: not Ed25519, a key name
 * with a space or a plus, a verifier key string (`<name>+<key id>+<base64 key>`) that
 * does not parse or whose key id does not match its key.
 */
export class InvalidNoteKeyError extends Error {
  constructor(
    /** What is wrong, for example `the key is rsa, not Ed25519`. */
    readonly problem: string,
  ) {
    super(`Invalid note key: ${problem}`);
    this.name = 'InvalidNoteKeyError';
  }
}
