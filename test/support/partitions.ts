import { AuditLogEntity } from '../../lib/index.js';
import { uuidv7 } from '../../lib/events/uuid-v7.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import type { TestApp } from '../app/create-test-app.js';

/** The UTC month `months` before the current one (negative: after it): its partition label (`2026_07`) and a time inside it. */
export function monthAgo(months: number, day = 10): { label: string; at: Date } {
  const now = new Date();
  const at = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, day, 12, 0, 0, 0));
  return { label: `${at.getUTCFullYear()}_${String(at.getUTCMonth() + 1).padStart(2, '0')}`, at };
}

/** The first instant (UTC) of the month `months` before the current one. */
export function monthStartAgo(months: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, 1));
}

/**
 * Stores `count` events at `at` (1 ms apart) through the module's writer, each about a
 * customer (`${label}-${i}`) and changing the order of the same id, so each has one
 * subject row; returns their ids.
 */
export async function storeEventsAt(t: TestApp, at: Date, count: number, label: string, requestId: string | null = null): Promise<string[]> {
  const rows = Array.from({ length: count }, (_, i) =>
    Object.assign(new AuditLogEntity(), {
      id: uuidv7(at.getTime() + i),
      occurredAt: new Date(at.getTime() + i),
      action: 'order.updated',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: `u-${label}`,
      actorDisplay: null,
      source: 'http',
      ip: null,
      userAgent: null,
      method: null,
      route: null,
      path: null,
      requestId,
      targetType: 'Customer',
      targetId: `${label}-${i}`,
      changes: [{ entity: 'Order', id: `${label}-${i}`, operation: 'update', fields: { status: { from: 'new', to: 'paid' } } }],
      context: null,
      reason: null,
      error: null,
      seq: null,
    }),
  );
  await t.app.get(AuditWriter).write(rows);
  return rows.map((row) => row.id);
}
