import type { SelectQueryBuilder } from 'typeorm';
import type { AuditEventBuilder } from '../events/audit-event.builder.js';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import { readStoredEvents } from '../integrity/stored-events.js';
import type { AuditEvent, AuditUnreadableFields } from '../interfaces/audit-event.interface.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { occurredAtParam } from './audit-query.js';

/**
 * Where a keyset page starts after an event (`find()`'s cursor, `history()`'s next page):
 * - `{ time, id }`: its time (ISO 8601, as `toISOString()` writes it), given back to the
 *   query as a parameter;
 * - `{ id }`: its time as stored, read by its id. For a row changed by hand whose time
 *   cannot be given back as one the database sorts where the row stands: no time at all
 *   (SQLite text such as `garbage`, PostgreSQL `infinity`, MariaDB's zero date), a year
 *   outside 0001 to 9999, or SQLite text other than the module writes (`…T10:00:00+01:00`,
 *   a number), which SQLite sorts as text or as a number rather than as its instant.
 */
export type ReadPosition = { time: string; id: string } | { time?: undefined; id: string };

/** An event as read, its row (JSON columns parsed from the stored text), and where the next page starts after it. */
export interface ReadEvent {
  event: AuditEvent;
  row: AuditLogEntity;
  position: ReadPosition;
}

/**
 * The events of `query` (over `audit_log` aliased `e`), its JSON columns and time read as
 * stored (`readStoredEvents`), so that a row changed by hand neither fails the read nor
 * the next page: a JSON column that holds no JSON, or a time that is none, is returned as
 * the stored text in the event's `unreadable`.
 */
export async function readEvents(query: SelectQueryBuilder<AuditLogEntity>, builder: AuditEventBuilder): Promise<ReadEvent[]> {
  const dataSource = query.connection;
  const sqlite = !['postgres', 'mysql', 'mariadb', 'aurora-mysql'].includes(String(dataSource.driver.options.type));
  const stored = await readStoredEvents(query, { time: true });
  return stored.map(({ row, unreadable: json, storedTime }) => {
    const unreadable: AuditUnreadableFields = { ...json };
    const event = builder.toEvent(row);
    if (Number.isNaN(event.occurredAt.getTime())) unreadable.occurredAt = String(storedTime);
    let position: ReadPosition = { id: row.id };
    try {
      const param = occurredAtParam(dataSource, event.occurredAt, 'time');
      // SQLite compares its text: only the module's own text sorts as its instant.
      if (!sqlite || param === storedTime) position = { time: event.occurredAt.toISOString(), id: row.id };
    } catch (error) {
      if (!(error instanceof InvalidAuditQueryError)) throw error;
    }
    return { event: Object.keys(unreadable).length ? { ...event, unreadable } : event, row, position };
  });
}

/**
 * Adds to `query` the condition of the rows after `position` in the order
 * `(occurredAt, id)` descending (`older`, find()'s) or ascending (`newer`, history()'s).
 * A position without a time compares with the stored time of its event, read by id (no
 * row: no row after it).
 */
export function afterPosition(query: SelectQueryBuilder<AuditLogEntity>, position: ReadPosition, direction: 'older' | 'newer'): void {
  const [before, beforeOrAt] = direction === 'older' ? ['<', '<='] : ['>', '>='];
  let at = ':positionAt';
  const parameters: Record<string, unknown> = { positionId: position.id };
  if (position.time === undefined) {
    at = query.subQuery().select('p.occurredAt').from(AuditLogEntity, 'p').where('p.id = :positionId').getQuery();
  } else {
    parameters['positionAt'] = occurredAtParam(query.connection, position.time, 'cursor');
  }
  // The first comparison is redundant, and lets the index scan start at the position (PostgreSQL
  // uses an OR only as a filter: a later page would read every earlier page again).
  query.andWhere(`e.occurredAt ${beforeOrAt} ${at} AND (e.occurredAt ${before} ${at} OR (e.occurredAt = ${at} AND e.id ${before} :positionId))`, parameters);
}
