/**
 * Thrown when a signed note carries a signature line whose key name and key id match a
 * known key, and the signature does not verify with it: the text or the signature was
 * altered, or another key was made to collide with the known key's id. The whole note
 * is rejected, even when another known key signed it validly.
 */
export class InvalidNoteSignatureError extends Error {
  constructor(
    /** The key name of the signature line. */
    readonly keyName: string,
    /** The key id of the signature line (unsigned 32-bit). */
    readonly keyId: number,
  ) {
    super(
      `Invalid signature for key ${keyName}+${keyId.toString(16).padStart(8, '0')}: ` +
        'the signed note was altered, or it was signed by a different key with the same name and key id',
    );
    this.name = 'InvalidNoteSignatureError';
  }
}
