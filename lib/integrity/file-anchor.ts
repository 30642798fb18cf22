import { open, readFile } from 'node:fs/promises';
import type { AuditCheckpoint } from '../interfaces/audit-integrity.interface.js';

/*
 * The checkpoints file: signed notes one after the other, each followed by one blank
 * line. A note is its text (origin, tree size, root hash, extension lines; none of them
 * empty), a blank line, and its signature lines (`— <key name> <base64>`), so the file
 * reads
 *
 *   audit.example.com/orders
 *   10000
 *   <base64 root>
 *
 *   — audit.example.com/orders <base64 signature>
 *
 *   audit.example.com/orders
 *   20000
 *   …
 *
 * Appending a note keeps the file valid, and `cat` of two files is a valid file.
 */

/**
 * An `anchor` for `integrity` that appends each checkpoint's note to a file (created if
 * need be), followed by a blank line, and flushes it to disk (`fsync`) before the
 * checkpoint counts as anchored. Calls are written one after the other. Read the file
 * back with {@link readCheckpointsFile}, or give it to `npx nestjs-system-audit verify
 * --checkpoints <file>`.
 *
 * @example AuditModule.forRoot({ integrity: { signingKey, origin, anchor: fileAnchor('/var/lib/audit/checkpoints') } })
 */
export function fileAnchor(path: string): (checkpoint: AuditCheckpoint) => Promise<void> {
  if (typeof path !== 'string' || path === '') throw new TypeError('fileAnchor(path): the path must be a non-empty string');
  let queue: Promise<void> = Promise.resolve();
  return (checkpoint) => {
    const next = queue.then(() => appendNote(path, checkpoint.note));
    // A failed append does not stop the next one.
    queue = next.catch(() => undefined);
    return next;
  };
}

/** The signed notes of a checkpoints file (see {@link fileAnchor}), in the file's order. */
export async function readCheckpointsFile(path: string): Promise<string[]> {
  return parseCheckpointsFile(await readFile(path, 'utf8'));
}

/** The text of a checkpoints file holding `notes`: each note followed by a blank line. */
export function formatCheckpointsFile(notes: Iterable<string>): string {
  let text = '';
  for (const note of notes) text += noteBlock(note);
  return text;
}

/**
 * The signed notes of a checkpoints file's text. A note is read as its text lines, the
 * blank line and the signature lines that follow; a blank line (or a line that is not a
 * signature line) ends it. Notes that are not well formed are returned as found, to be
 * reported when opened.
 */
export function parseCheckpointsFile(text: string): string[] {
  const notes: string[] = [];
  let body: string[] = [];
  let signatures: string[] = [];
  let inSignatures = false;
  const emit = (): void => {
    if (body.length > 0 || signatures.length > 0) {
      notes.push(`${body.map((l) => `${l}\n`).join('')}\n${signatures.map((l) => `${l}\n`).join('')}`);
    }
    body = [];
    signatures = [];
    inSignatures = false;
  };
  for (const line of text.split('\n')) {
    if (!inSignatures) {
      if (line === '') {
        if (body.length > 0) inSignatures = true;
      } else {
        body.push(line);
      }
    } else if (line.startsWith('\u2014 ')) {
      signatures.push(line);
    } else {
      emit();
      if (line !== '') body.push(line);
    }
  }
  emit();
  return notes;
}

const noteBlock = (note: string): string => `${note.endsWith('\n') ? note : `${note}\n`}\n`;

async function appendNote(path: string, note: string): Promise<void> {
  const file = await open(path, 'a');
  try {
    await file.appendFile(noteBlock(note), 'utf8');
    await file.sync();
  } finally {
    await file.close();
  }
}
