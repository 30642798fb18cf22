import { FaultItem } from '../fault-item.entity.js';
import type { AuditRow, ItemRow } from './fault-database.js';
import type { ResponseRecord } from './load-client.js';

/** The entity name the module records for `fault_item` changes. */
const ITEM_ENTITY = FaultItem.name;
/** Examples kept per kind of finding. */
const EXAMPLES = 5;

/**
 * What one scenario left behind:
 * - `a`: 2xx answers of an `@Audited` route with no intent event of that request id and action;
 * - `b`: committed changes (an item's insert, each of its revisions) in no event's `changes`;
 * - `d`: extra events: a second intent of one request id + action (+ part), or a second
 *   event recording one committed insert or one committed revision;
 * - `ghosts`: recorded inserts or revisions that are not in the table (a rolled-back change
 *   in the trail); reported, not counted in a, b or d.
 */
export interface Findings {
  requests: number;
  ok: number;
  other: number;
  /** Count per status code or network error. */
  statuses: Map<string, number>;
  /** 2xx answers whose `x-request-id` header was not the one sent. */
  echoMismatches: number;
  a: number;
  b: number;
  d: number;
  ghosts: number;
  events: number;
  /** Events per outcome (`unknown`: recovered from the journal of a unit that never ended). */
  outcomes: Map<string, number>;
  examples: { a: string[]; b: string[]; d: string[]; ghosts: string[] };
}

interface ChangeLike {
  entity?: unknown;
  id?: unknown;
  ids?: unknown;
  operation?: unknown;
  partial?: unknown;
  fields?: Record<string, { to?: unknown } | undefined>;
}

const isOk = (status: number | undefined): boolean => status !== undefined && status >= 200 && status < 300;

const push = <K, V>(map: Map<K, V[]>, key: K, value: V): void => {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
};

const example = (list: string[], text: string): void => {
  if (list.length < EXAMPLES) list.push(text);
};

function changeIds(change: ChangeLike): string[] {
  if (change.id !== undefined && change.id !== null) return [String(change.id)];
  if (Array.isArray(change.ids)) return change.ids.map((id) => String(id));
  return [];
}

/** Computes a, b, d (see `Findings`) from the client's records and the database's rows. */
export function computeFindings(records: readonly ResponseRecord[], items: readonly ItemRow[], events: readonly AuditRow[]): Findings {
  const findings: Findings = {
    requests: records.length,
    ok: 0,
    other: 0,
    statuses: new Map(),
    echoMismatches: 0,
    a: 0,
    b: 0,
    d: 0,
    ghosts: 0,
    events: events.length,
    outcomes: new Map(),
    examples: { a: [], b: [], d: [], ghosts: [] },
  };

  // Intents by request id + action + part.
  const intents = new Map<string, string[]>();
  // Which events record each item's insert, each `item@revision` update, and partial updates per item.
  const inserts = new Map<string, string[]>();
  const updates = new Map<string, string[]>();
  const partialUpdates = new Map<string, string[]>();
  for (const event of events) {
    findings.outcomes.set(event.outcome, (findings.outcomes.get(event.outcome) ?? 0) + 1);
    if (event.kind === 'intent' && event.requestId !== null) {
      const part = (event.context as { part?: unknown } | null)?.part;
      push(intents, JSON.stringify([event.requestId, event.action, part ?? null]), event.id);
    }
    const changes = Array.isArray(event.changes) ? (event.changes as ChangeLike[]) : [];
    for (const change of changes) {
      if (!change || change.entity !== ITEM_ENTITY) continue;
      for (const id of changeIds(change)) {
        if (change.operation === 'insert') push(inserts, id, event.id);
        if (change.operation !== 'update') continue;
        const revision = change.fields?.['revision']?.to;
        if (change.partial !== true && typeof revision === 'number') push(updates, `${id}@${revision}`, event.id);
        else push(partialUpdates, id, event.id);
      }
    }
  }

  // Answers.
  const intentOf = new Set([...intents.keys()].map((key) => JSON.stringify((JSON.parse(key) as unknown[]).slice(0, 2))));
  for (const record of records) {
    const key = record.status !== undefined ? String(record.status) : (record.error ?? 'error');
    findings.statuses.set(key, (findings.statuses.get(key) ?? 0) + 1);
    if (!isOk(record.status)) {
      findings.other++;
      continue;
    }
    findings.ok++;
    if (record.echoedRequestId !== record.requestId) findings.echoMismatches++;
    if (record.action !== undefined && !intentOf.has(JSON.stringify([record.requestId, record.action]))) {
      findings.a++;
      example(findings.examples.a, `${record.status} ${record.operation} x-request-id=${record.requestId}: no "${record.action}" intent`);
    }
  }

  // Committed changes.
  const revisions = new Map(items.map((item) => [item.id, item.revision]));
  const answers = new Map(records.map((record) => [record.requestId, record]));
  for (const item of items) {
    const inserted = inserts.get(item.id) ?? [];
    if (inserted.length === 0) {
      findings.b++;
      const call = item.requestId === null ? undefined : answers.get(item.requestId);
      const answer = call ? `, answered ${call.status ?? call.error}` : '';
      example(findings.examples.b, `item ${item.id} (inserted by x-request-id ${item.requestId}${answer}): insert in no event`);
    }
    if (inserted.length > 1) {
      findings.d += inserted.length - 1;
      example(findings.examples.d, `item ${item.id}: insert in ${inserted.length} events (${inserted.join(', ')})`);
    }
    let partials = partialUpdates.get(item.id)?.length ?? 0;
    for (let revision = 2; revision <= item.revision; revision++) {
      const recorded = updates.get(`${item.id}@${revision}`) ?? [];
      if (recorded.length === 0) {
        if (partials > 0) partials--;
        else {
          findings.b++;
          example(findings.examples.b, `item ${item.id}: update to revision ${revision} in no event`);
        }
      }
      if (recorded.length > 1) {
        findings.d += recorded.length - 1;
        example(findings.examples.d, `item ${item.id}: update to revision ${revision} in ${recorded.length} events (${recorded.join(', ')})`);
      }
    }
  }
  for (const [key, ids] of intents) {
    if (ids.length < 2) continue;
    findings.d += ids.length - 1;
    example(findings.examples.d, `${ids.length} intent events for [request id, action, part] ${key}`);
  }

  // Records of changes that are not in the table.
  for (const id of inserts.keys()) {
    if (!revisions.has(id)) {
      findings.ghosts++;
      example(findings.examples.ghosts, `insert of item ${id}, which is not in the table`);
    }
  }
  for (const key of updates.keys()) {
    const [id, revision] = key.split('@') as [string, string];
    const current = revisions.get(id);
    if (current === undefined || Number(revision) > current) {
      findings.ghosts++;
      example(findings.examples.ghosts, `update of item ${id} to revision ${revision}, past the table's ${current ?? 'missing row'}`);
    }
  }
  return findings;
}

/** Counts as `201:812 500:3 ECONNREFUSED:40`, most frequent first. */
export const formatCounts = (statuses: ReadonlyMap<string, number>): string =>
  [...statuses.entries()]
    .sort((x, y) => y[1] - x[1])
    .map(([status, count]) => `${status}:${count}`)
    .join(' ');
