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
 * - `{ stored, id }`: its time as the database stores it (`readStoredEvents`' `storedTime`),
 *   given back as that. For a row changed by hand whose time cannot be given back as one
 *   the database sorts where the row stands: no time at all (SQLite text such as
 *   `garbage`, PostgreSQL `infinity`, MariaDB's zero date), a year outside 0001 to 9999,
 *   or SQLite text other than the module writes (`…T10:00:00+01:00`, a number), which
 *   SQLite sorts as text or as a number rather than as its instant. The position holds
 *   the value itself, so that the next page starts where it stood also when that row is
 *   gone by then.
 */
export type ReadPosition = { time: string; id: string; stored?: undefined } | { time?: undefined; stored: string | number; id: string };

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
  const stored = await readStoredEvents(query, { time: true, check: false });
  return stored.map(({ row, unreadable: json, storedTime }) => {
    const unreadable: AuditUnreadableFields = { ...json };
    const event = builder.toEvent(row);
    if (Number.isNaN(event.occurredAt.getTime())) unreadable.occurredAt = String(storedTime);
    let position: ReadPosition = { stored: typeof storedTime === 'number' ? storedTime : String(storedTime), id: row.id };
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
 * A position of a stored time compares with that value as the database reads it back
 * (PostgreSQL: cast from its text to the column's type; MariaDB and SQLite: as it is).
 */
export function afterPosition(query: SelectQueryBuilder<AuditLogEntity>, position: ReadPosition, direction: 'older' | 'newer'): void {
  const [before, beforeOrAt] = direction === 'older' ? ['<', '<='] : ['>', '>='];
  const dataSource = query.connection;
  let at = ':positionAt';
  const parameters: Record<string, unknown> = { positionId: position.id };
  if (position.time === undefined) {
    parameters['positionAt'] = position.stored;
    if (String(dataSource.driver.options.type) === 'postgres') {
      const column = dataSource.getMetadata(AuditLogEntity).findColumnWithPropertyName('occurredAt')!;
      at = `CAST(:positionAt AS ${dataSource.driver.normalizeType(column)})`;
    }
  } else {
    parameters['positionAt'] = occurredAtParam(dataSource, position.time, 'cursor');
  }
  // The first comparison is redundant, and lets the index scan start at the position (PostgreSQL
  // uses an OR only as a filter: a later page would read every earlier page again).
  query.andWhere(`e.occurredAt ${beforeOrAt} ${at} AND (e.occurredAt ${before} ${at} OR (e.occurredAt = ${at} AND e.id ${before} :positionId))`, parameters);
}
