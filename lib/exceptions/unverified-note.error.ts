/**
 * Thrown when a signed note is well formed but carries no signature from a known key.
 * The signers it does carry are listed, so an operator can tell a rotated-away key
 * from a forgery.
 */
export class UnverifiedNoteError extends Error {
  constructor(
    /** The signatures from unknown keys, as `{ keyName, keyId }`. */
    readonly unknownSigners: ReadonlyArray<{ readonly keyName: string; readonly keyId: number }>,
  ) {
    super(
      'The signed note has no signature from a known key' +
        (unknownSigners.length
          ? `; it is signed only by unknown key(s) ${unknownSigners
              .map((s) => `${s.keyName}+${s.keyId.toString(16).padStart(8, '0')}`)
              .join(', ')}`
          : ''),
    );
    this.name = 'UnverifiedNoteError';
  }
}
