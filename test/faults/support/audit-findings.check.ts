import { computeFindings } from './audit-findings.js';
import type { AuditRow, ItemRow } from './fault-database.js';
import type { ResponseRecord } from './load-client.js';

const ENTITY = 'FaultItem';

const event = (id: string, kind: string, action: string, requestId: string | null, changes: unknown[], context: unknown = null): AuditRow => ({
  id,
  kind,
  action,
  outcome: 'success',
  requestId,
  changes,
  context,
});

const insert = (id: string) => ({ entity: ENTITY, id, operation: 'insert', fields: { revision: { to: 1 } } });
const update = (id: string, to: number) => ({ entity: ENTITY, id, operation: 'update', fields: { revision: { from: to - 1, to } } });

/**
 * Runs the counting on a hand-made case with known answers, so that a runner whose
 * counting could not see a defect fails before it reports any "0". Returns the
 * mismatches (none: the counting works).
 */
export function checkFindings(): string[] {
  const records: ResponseRecord[] = [
    { requestId: 'r-1', operation: 'create', action: 'item.created', status: 201, echoedRequestId: 'r-1', startedAt: 0 },
    // A 2xx of an @Audited route without its intent: A.
    { requestId: 'r-2', operation: 'update', action: 'item.updated', status: 200, echoedRequestId: 'r-2', startedAt: 0 },
    // An intent of another action does not count as this one's.
    { requestId: 'r-3', operation: 'update', action: 'item.updated', status: 200, echoedRequestId: 'r-3', startedAt: 0 },
    { requestId: 'r-4', operation: 'create', action: 'item.created', status: 500, echoedRequestId: 'r-4', startedAt: 0 },
    { requestId: 'r-5', operation: 'touch', action: undefined, status: 200, echoedRequestId: 'r-5', startedAt: 0 },
    { requestId: 'r-6', operation: 'create', action: 'item.created', status: undefined, error: 'ECONNRESET', startedAt: 0 },
  ];
  const items: ItemRow[] = [
    { id: '1', revision: 3, requestId: null }, // revision 3 in no event: B
    { id: '2', revision: 1, requestId: null }, // insert in two events: D
    { id: '3', revision: 1, requestId: null }, // insert in no event: B
    { id: '4', revision: 2, requestId: null }, // update recorded as a partial change: fine
    { id: '5', revision: 2, requestId: null }, // revision 2 in two events: D
  ];
  const events: AuditRow[] = [
    event('e1', 'intent', 'item.created', 'r-1', [insert('1')]),
    event('e2', 'change', 'faultItem.updated', 'r-5', [update('1', 2)]),
    event('e3', 'intent', 'item.created', 'r-6', [insert('2')]),
    event('e4', 'change', 'faultItem.created', 'r-6', [insert('2')]),
    event('e5', 'intent', 'item.created', 'r-7', [insert('4'), { entity: ENTITY, operation: 'update', partial: true, ids: ['4'] }]),
    event('e6', 'intent', 'item.created', 'r-8', [insert('5'), update('5', 2)]),
    event('e7', 'change', 'faultItem.updated', 'r-8', [update('5', 2)]),
    // Two intents of one request and action: D; two parts of one unit are not.
    event('e8', 'intent', 'item.updated', 'r-9', []),
    event('e9', 'intent', 'item.updated', 'r-9', []),
    event('e10', 'intent', 'item.updated', 'r-10', [], { part: 1 }),
    event('e11', 'intent', 'item.updated', 'r-10', [], { part: 2 }),
    event('e12', 'intent', 'item.created', 'r-3', []),
    // A recorded insert of a row that is not in the table.
    event('e13', 'intent', 'item.created', 'r-11', [insert('9')]),
  ];
  const found = computeFindings(records, items, events);
  const expected = { requests: 6, ok: 4, other: 2, a: 2, b: 2, d: 3, ghosts: 1 };
  return Object.entries(expected)
    .filter(([key, value]) => found[key as keyof typeof expected] !== value)
    .map(([key, value]) => `${key}: counted ${found[key as keyof typeof expected]}, expected ${value}`);
}
