/**
 * Thrown when a signed note is well formed but carries no signature from a known key.
 * The signers it does carry are listed, so an operator can tell a rotated-away key
 * from a forgery.
 */
export class UnverifiedNoteError extends Error {
  constructor(
    /** The signatures from unknown keys, as `{ keyName, keyId }`. */
    readonly unknownSigners: ReadonlyArray<{ readonly keyName: string; readonly keyId: number }>,
    /** Keys given under one name that signed under another (the name is part of the key id). */
    readonly renamed: ReadonlyArray<{ readonly given: string; readonly signedAs: string }> = [],
  ) {
    super(
      'The signed note has no signature from a known key' +
        (unknownSigners.length
          ? `; it is signed only by unknown key(s) ${unknownSigners
              .map((s) => `${s.keyName}+${s.keyId.toString(16).padStart(8, '0')}`)
              .join(', ')}`
          : '') +
        renamed
          .map(
            ({ given, signedAs }) =>
              `; the key given as ${JSON.stringify(given)} is the one that signed as ${JSON.stringify(signedAs)}: a verifier key string names its key, ` +
              `so give it under the name the checkpoints are signed under (keyName, by default the origin), e.g. keygen --name ${JSON.stringify(signedAs)}`,
          )
          .join(''),
    );
    this.name = 'UnverifiedNoteError';
  }
}
