import type { AuditLogEntity } from '../../lib/index.js';

/** The `note` values an event's changes set, in order (the tests that tell requests apart by a note each sends). */
export const notesOf = (row: AuditLogEntity): string[] =>
  (row.changes ?? []).map((change) => (change.fields['note'] as { to?: unknown } | undefined)?.to).filter((n): n is string => typeof n === 'string');
