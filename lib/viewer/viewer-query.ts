import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import type { AuditOutcome } from '../interfaces/audit-event.interface.js';
import type { AuditQuery } from '../interfaces/audit-service.interface.js';
import { AUDIT_KINDS, AUDIT_OUTCOMES, parseIsoInstant } from '../read/audit-query.js';

/** The fields of the search form, in its order (also the query string's names). */
export const SEARCH_FIELDS = [
  'actorType',
  'actorId',
  'targetType',
  'targetId',
  'action',
  'source',
  'outcome',
  'kind',
  'from',
  'to',
  'requestId',
] as const;

export type SearchField = (typeof SEARCH_FIELDS)[number];

/** The search form as submitted: each field's text (`''` when empty), and the page's cursor. */
export type SearchForm = Record<SearchField, string> & { cursor: string };

const MAX_FIELD = 512;

/**
 * Reads the search form from a request's query. Names it does not know are ignored (an
 * app's own parameters); a known one given twice, too long or holding a NUL is refused.
 * @throws InvalidAuditQueryError naming the field.
 */
export function readSearchForm(query: unknown): SearchForm {
  const source = query !== null && typeof query === 'object' ? (query as Record<string, unknown>) : {};
  const form = { cursor: field(source, 'cursor', 2048) } as SearchForm;
  for (const name of SEARCH_FIELDS) form[name] = field(source, name, MAX_FIELD);
  return form;
}

/** A query parameter's text, `''` when absent. */
export function field(source: Record<string, unknown>, name: string, max = MAX_FIELD): string {
  const value = source[name];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new InvalidAuditQueryError(name, 'is given more than once');
  if (value.length > max) throw new InvalidAuditQueryError(name, `is longer than ${max} characters`);
  // No stored text holds one (NUL is stored escaped), and PostgreSQL refuses it in a parameter.
  if (value.includes('\u0000')) throw new InvalidAuditQueryError(name, 'contains a NUL character');
  return value.trim();
}

/**
 * The `find()` query of a submitted form.
 * @throws InvalidAuditQueryError for a value the form cannot take (a date that is not one,
 *   an unknown outcome, a target id without its type).
 */
export function toAuditQuery(form: SearchForm, limit: number): AuditQuery {
  const query: AuditQuery = { limit };
  if (form.actorType) query.actorType = form.actorType;
  if (form.actorId) query.actorId = form.actorId;
  if (form.targetId) {
    if (!form.targetType) throw new InvalidAuditQueryError('targetId', 'needs a target type (e.g. "order") to go with it');
    query.target = { type: form.targetType, id: form.targetId };
  } else if (form.targetType) {
    query.targetType = form.targetType;
  }
  if (form.action) query.action = form.action;
  if (form.source) query.source = form.source;
  if (form.outcome) {
    if (!(AUDIT_OUTCOMES as readonly string[]).includes(form.outcome)) throw new InvalidAuditQueryError('outcome', `must be one of ${AUDIT_OUTCOMES.join(', ')}, got ${JSON.stringify(form.outcome)}`);
    query.outcome = form.outcome as AuditOutcome;
  }
  if (form.kind) {
    if (!(AUDIT_KINDS as readonly string[]).includes(form.kind)) throw new InvalidAuditQueryError('kind', `must be one of ${AUDIT_KINDS.join(', ')}, got ${JSON.stringify(form.kind)}`);
    query.kind = form.kind as (typeof AUDIT_KINDS)[number];
  }
  if (form.from) query.from = instant(form.from, 'from');
  if (form.to) query.to = instant(form.to, 'to');
  if (form.requestId) query.requestId = form.requestId;
  if (form.cursor) query.cursor = form.cursor;
  return query;
}

/** The filters actually set, for the `audit.viewed` event's context. */
export function filtersOf(form: SearchForm): Record<string, string> {
  const filters: Record<string, string> = {};
  for (const name of [...SEARCH_FIELDS, 'cursor'] as const) if (form[name]) filters[name] = form[name];
  return filters;
}

/** A time of the form: a `datetime-local` value (what it sends has no zone: UTC) or an ISO 8601 time with its zone. */
function instant(value: string, name: string): Date {
  // A day or time off the calendar (2026-02-30, 24:00) is refused, not rolled over into the next.
  const date = parseIsoInstant(value);
  if (!date) {
    throw new InvalidAuditQueryError(name, `is not a valid date and time: ${JSON.stringify(value)} (use YYYY-MM-DDTHH:MM, in UTC)`);
  }
  return date;
}
