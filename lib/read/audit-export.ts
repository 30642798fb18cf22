import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify/sync';
import type { DataSource, SelectQueryBuilder } from 'typeorm';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import { canonicalEventJson, canonicalJson } from '../integrity/canonical-json.js';
import { exportEventLine } from '../integrity/jsonl-log-source.js';
import { readStoredEvents, type StoredEvent } from '../integrity/stored-events.js';
import type { AuditExportFormat, AuditExportSkipped } from '../interfaces/audit-service.interface.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { occurredAtParam } from './audit-query.js';

/** Rows read per query of an export. */
export const EXPORT_PAGE_SIZE = 1_000;

/** The columns of a CSV export, in order (the header row). */
export const CSV_EXPORT_COLUMNS = [
  'id',
  'seq',
  'occurred_at',
  'action',
  'outcome',
  'kind',
  'actor_type',
  'actor_id',
  'actor_display',
  'source',
  'ip',
  'user_agent',
  'method',
  'route',
  'path',
  'request_id',
  'target_type',
  'target_id',
  'reason',
  'changes',
  'context',
  'error',
] as const;

/**
 * The order an export reads in:
 * - `time`: ascending `(occurredAt, id)`, every matching event;
 * - `seq`: the sequenced events ascending by `seq` (the order of the Merkle tree, what
 *   `verify --events` walks), then those not sequenced yet, ascending `(occurredAt, id)`
 *   (one the integrator sequences while they are read is exported there, with its seq).
 */
export type AuditExportOrder = 'time' | 'seq';

/** What an export reads and how it writes it. */
export interface AuditExportPlan {
  dataSource: DataSource;
  /** A query builder over `audit_log` aliased `e`, with the export's filters; each page is read from a clone. */
  query: SelectQueryBuilder<AuditLogEntity>;
  order: AuditExportOrder;
  format: AuditExportFormat;
  /** @default EXPORT_PAGE_SIZE */
  pageSize?: number;
}

/** The export format named by `value` (`undefined`: `jsonl`). */
export function exportFormat(value: unknown): AuditExportFormat {
  if (value === undefined) return 'jsonl';
  if (value === 'jsonl' || value === 'csv') return value;
  throw new InvalidAuditQueryError('format', `must be "jsonl" or "csv", got ${JSON.stringify(value)}`);
}

/**
 * The export as a byte stream (UTF-8 text). Pages are read one at a time, each only
 * when the consumer has taken the rows before it (the stream's back-pressure), so
 * memory stays constant whatever the size of the trail; an error of the database
 * destroys the stream with that error. An event left out (see {@link exportRecords}) is
 * emitted as a `'skipped'` event of the stream, with its {@link AuditExportSkipped}.
 */
export function auditExportStream(plan: AuditExportPlan, onSkipped?: (skipped: AuditExportSkipped) => void): Readable {
  const stream = Readable.from(
    exportText(plan, (skipped) => {
      onSkipped?.(skipped);
      stream.emit('skipped', skipped);
    }),
    { objectMode: false },
  );
  return stream;
}

/** The export's text, a line (or CSV record) at a time. */
export async function* exportText(plan: AuditExportPlan, onSkipped: (skipped: AuditExportSkipped) => void): AsyncGenerator<string> {
  const header = exportHeader(plan.format);
  if (header) yield header;
  yield* exportRecords(plan, onSkipped);
}

/**
 * The records of an export (without the header), in its order. A row that cannot be
 * written as what it stores is left out and handed to `onSkipped`, and the export goes
 * on: a JSON column holding text the module does not write (a member repeated, a number
 * past double precision or range: see `strictJsonProblem`), or a value the event's
 * canonical JSON cannot carry. Anyone who may insert into `audit_log` can store such a
 * row; the module never does, and `verify` reports it.
 */
export async function* exportRecords(plan: AuditExportPlan, onSkipped: (skipped: AuditExportSkipped) => void): AsyncGenerator<string> {
  for await (const { row, problem } of exportRows(plan)) {
    let record: string | undefined;
    let reason = problem;
    if (reason === undefined) {
      try {
        record = exportRecord(plan.format, row);
      } catch (error) {
        // What canonicalisation (TypeError) or a date that is not one (RangeError) throws.
        if (!(error instanceof TypeError || error instanceof RangeError)) throw error;
        reason = error.message;
      }
    }
    if (record !== undefined) yield record;
    else onSkipped({ id: row.id, seq: row.seq ?? null, reason: reason! });
  }
}

/** What an export starts with: the header record of CSV, nothing for JSON Lines. */
export function exportHeader(format: AuditExportFormat): string {
  return format === 'csv' ? csvRecord(CSV_EXPORT_COLUMNS, false) : '';
}

/** One row as exported: its JSON Lines line or its CSV record, with the line end. */
export function exportRecord(format: AuditExportFormat, row: AuditLogEntity): string {
  return format === 'csv' ? csvRecord(csvCells(row)) : `${exportLine(row)}\n`;
}

/**
 * The rows of an export, in its order, a page at a time (keyset pagination: every page
 * costs the same), with their JSON columns read as stored text and checked
 * (`readStoredEvents`).
 */
export async function* exportRows(plan: AuditExportPlan): AsyncGenerator<StoredEvent> {
  const pageSize = plan.pageSize ?? EXPORT_PAGE_SIZE;
  // The last seq of the seq part: the integrator gives the events not sequenced yet larger
  // ones, so an event sequenced while the rest is read stays in it (`seq IS NULL` alone
  // would drop it from both parts).
  let sequenced = 0;
  if (plan.order === 'seq') {
    for (;;) {
      const page = plan.query.clone().andWhere('e.seq IS NOT NULL');
      if (sequenced > 0) page.andWhere('e.seq > :afterSeq', { afterSeq: sequenced });
      const rows = await readStoredEvents(page.orderBy('e.seq', 'ASC').limit(pageSize));
      yield* rows;
      if (rows.length > 0) sequenced = rows[rows.length - 1]!.row.seq!;
      if (rows.length < pageSize) break;
    }
  }
  let last: AuditLogEntity | undefined;
  for (;;) {
    const page = plan.query.clone();
    if (plan.order === 'seq') page.andWhere('(e.seq IS NULL OR e.seq > :sequenced)', { sequenced });
    if (last) {
      // The first comparison is redundant, and lets the index scan start after the last page
      // (PostgreSQL uses an OR only as a filter: each page would read every earlier one again).
      page.andWhere('e.occurredAt >= :afterAt AND (e.occurredAt > :afterAt OR (e.occurredAt = :afterAt AND e.id > :afterId))', {
        afterAt: occurredAtParam(plan.dataSource, last.occurredAt, 'occurredAt'),
        afterId: last.id,
      });
    }
    const rows = await readStoredEvents(page.orderBy('e.occurredAt', 'ASC').addOrderBy('e.id', 'ASC').limit(pageSize));
    yield* rows;
    if (rows.length < pageSize) return;
    last = rows[rows.length - 1]!.row;
  }
}

/**
 * The JSON Lines export line of a row (without the newline): `exportEventLine(row)` for
 * a sequenced event; for one without a seq (not sequenced yet, or integrity off) the same
 * canonical JSON with `"seq":null`, which `verify --events` passes over (such an event is
 * in no signed tree yet).
 */
export function exportLine(row: AuditLogEntity): string {
  if (row.seq !== null && row.seq !== undefined) return exportEventLine(row);
  return canonicalJson({ ...(JSON.parse(canonicalEventJson(row)) as Record<string, unknown>), seq: null });
}

/**
 * The starts that make a spreadsheet read a cell as a formula (OWASP, CSV injection): `=`,
 * `+`, `-`, `@` (or their full-width forms, which spreadsheets in CJK locales take as
 * them), a tab or a carriage return; the signs also behind whitespace or quotes, which an
 * import that trims or unquotes cells takes off, and the tab or carriage return behind
 * apostrophes — so that a cell that matches still matches with a `'` before it, and a
 * reader that drops the `'` of a cell whose rest matches gets every value back exactly.
 */
const FORMULA_START = /^[\s"']*[=+\-@\uFF1D\uFF0B\uFF0D\uFF20]|^'*[\t\r]/;

/**
 * A cell as written to CSV: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
 * return (or one of the four signs behind whitespace or quotes, or full-width) gets a
 * leading `'`, so that a spreadsheet shows it as text instead of running it (and every
 * cell is quoted: {@link csvRecord}).
 */
export function csvCell(value: string | null | undefined): string {
  if (value === null || value === undefined) return '';
  return FORMULA_START.test(value) ? `'${value}` : value;
}

/** The cells of a row, in {@link CSV_EXPORT_COLUMNS} order. */
export function csvCells(row: AuditLogEntity): string[] {
  const json = (value: unknown): string | null => (value === null || value === undefined ? null : JSON.stringify(value));
  return [
    row.id,
    row.seq === null || row.seq === undefined ? null : String(row.seq),
    (row.occurredAt instanceof Date ? row.occurredAt : new Date(row.occurredAt)).toISOString(),
    row.action,
    row.outcome,
    row.kind,
    row.actorType,
    row.actorId,
    row.actorDisplay,
    row.source,
    row.ip,
    row.userAgent,
    row.method,
    row.route,
    row.path,
    row.requestId,
    row.targetType,
    row.targetId,
    row.reason,
    json(row.changes),
    json(row.context),
    json(row.error),
  ].map(csvCell);
}

/**
 * One CSV record (RFC 4180, CRLF-terminated), every non-empty cell of an event quoted (the
 * header's fixed names need none): a spreadsheet
 * set to another list separator (`;` in much of Europe) would otherwise split an unquoted
 * cell such as `refund;=cmd|…` there and read its second part as a formula.
 */
function csvRecord(cells: readonly string[], quoted = true): string {
  return stringify([cells], { record_delimiter: 'windows', ...(quoted ? { quoted: true } : {}) });
}
