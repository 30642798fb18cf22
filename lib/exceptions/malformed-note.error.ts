/**
 * Thrown when a signed note (C2SP signed-note) cannot be signed or opened because of
 * its shape: a text that does not end in a newline, a control character, no blank line
 * before the signatures, a signature line that is not `— <key name> <base64>`.
 */
export class MalformedNoteError extends Error {
  constructor(
    /** What is wrong, for example `signature line 2 does not start with "— "`. */
    readonly problem: string,
  ) {
    super(`Malformed signed note: ${problem}`);
    this.name = 'MalformedNoteError';
  }
}
