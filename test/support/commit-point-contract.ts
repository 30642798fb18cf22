// What a test of a transaction ended by hand checks of the audit trail: each committed
// insert of an order has exactly one record, and none other has; the journal is empty.
import type { DataSource } from 'typeorm';
import { expect } from 'vitest';
import { AuditJournalEntity, type AuditLogEntity } from '../../lib/index.js';
import { Order } from '../app/order.entity.js';

/** An order insert recorded in `audit_log`, with the row that records it. */
export interface RecordedInsert {
  note: string;
  id: string | null;
  row: AuditLogEntity;
}

/** The order inserts `rows` record, each with its row. */
export function orderInserts(rows: AuditLogEntity[]): RecordedInsert[] {
  return rows.flatMap((row) =>
    (row.changes ?? [])
      .filter((change) => change.entity === 'Order' && change.operation === 'insert')
      .map((change) => {
        const note = (change.fields as { note?: { to?: unknown } } | undefined)?.note?.to;
        return { note: String(note), id: change.id ?? null, row };
      }),
  );
}

/** The notes of the orders `dataSource` holds, sorted. */
export async function storedNotes(dataSource: DataSource): Promise<string[]> {
  return (await dataSource.getRepository(Order).find()).map((order) => order.note ?? '').sort();
}

/**
 * Waits (bounded) until the journal of each of `journals` is empty and the order inserts in
 * `rows()` are exactly `expected` (sorted notes, each once), then checks again a little later
 * that nothing more came (a record written twice). Returns the recorded inserts.
 */
export async function expectRecordedOnce(
  rows: () => Promise<AuditLogEntity[]>,
  journals: DataSource[],
  expected: string[],
): Promise<RecordedInsert[]> {
  const notes = async () => orderInserts(await rows()).map((insert) => insert.note).sort();
  const journalRows = async () => {
    let count = 0;
    for (const dataSource of journals) count += await dataSource.getRepository(AuditJournalEntity).count();
    return count;
  };
  await expect.poll(notes, { timeout: 5000, interval: 100 }).toEqual([...expected].sort());
  await expect.poll(journalRows, { timeout: 5000, interval: 100 }).toBe(0);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await notes()).toEqual([...expected].sort());
  expect(await journalRows()).toBe(0);
  return orderInserts(await rows());
}
