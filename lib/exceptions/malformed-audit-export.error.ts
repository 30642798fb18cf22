/**
 * Thrown when a JSON Lines export of the audit log cannot be read: a line that is not a
 * JSON object, or whose `seq` is not a positive integer, or that has no string `id`.
 */
export class MalformedAuditExportError extends Error {
  constructor(
    /** The file read (or `(text)`). */
    readonly file: string,
    /** The line, from 1. */
    readonly line: number,
    /** What is wrong with it. */
    readonly problem: string,
  ) {
    super(`Malformed audit export ${file}, line ${line}: ${problem}`);
    this.name = 'MalformedAuditExportError';
  }
}
