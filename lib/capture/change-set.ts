import { isDeepStrictEqual } from 'node:util';
import type {
  AuditChange,
  AuditChangeOperation,
  AuditFieldChange,
  AuditRelationChange,
} from '../interfaces/audit-event.interface.js';

/** A change as captured, before it is merged into a unit of work's net changes. */
export interface CapturedChange extends AuditChange {
  /** When it was first captured. */
  at: Date;
  /** The entity's soft-delete column, if it has one: setting it reads as a delete. */
  deleteDateField?: string;
}

type FieldValue = AuditFieldChange | AuditRelationChange;

const isRelation = (value: FieldValue): value is AuditRelationChange =>
  'added' in value && 'removed' in value;

const changeKey = (entity: string, id: string | null): string => `${entity}\u0000${id ?? ''}`;

/**
 * The net changes of a unit of work, one per entity instance (type + primary key):
 * repeated updates merge (first `from`, last `to`), fields whose net value did not
 * change are dropped, insert-then-update is one insert, insert-then-delete is nothing,
 * delete-then-insert of one key is an update from the deleted values to the inserted ones.
 */
export class ChangeSet {
  private readonly entries = new Map<string, CapturedChange>();
  /** Changes whose instance could not be identified; never merged. */
  private readonly unidentified: CapturedChange[] = [];

  get isEmpty(): boolean {
    return this.entries.size === 0 && this.unidentified.length === 0;
  }

  get size(): number {
    return this.entries.size + this.unidentified.length;
  }

  record(change: CapturedChange): void {
    if (change.id === null) {
      this.unidentified.push(change);
      return;
    }
    const key = changeKey(change.entity, change.id);
    const previous = this.entries.get(key);
    const merged = previous ? merge(previous, change) : prune(change);
    if (merged) this.entries.set(key, merged);
    else this.entries.delete(key);
  }

  /** Merges every change of `other` into this set (a committed transaction's changes). */
  absorb(other: ChangeSet): void {
    for (const change of other.take(() => true)) this.record(change);
  }

  /** Every change, in capture order, leaving the set as it is. */
  list(): CapturedChange[] {
    return [...this.entries.values(), ...this.unidentified].sort((a, b) => a.at.getTime() - b.at.getTime());
  }

  /** Removes and returns the changes `predicate` accepts, in capture order. */
  take(predicate: (change: CapturedChange) => boolean): CapturedChange[] {
    const taken: CapturedChange[] = [];
    for (const [key, change] of this.entries) {
      if (predicate(change)) {
        taken.push(change);
        this.entries.delete(key);
      }
    }
    // In capture order: changes of one millisecond keep the order they were made in.
    let kept = 0;
    for (const change of this.unidentified) {
      if (predicate(change)) taken.push(change);
      else this.unidentified[kept++] = change;
    }
    this.unidentified.length = kept;
    return taken.sort((a, b) => a.at.getTime() - b.at.getTime());
  }
}

/** Drops fields whose value did not change; an update with no field left is no change. */
function prune(change: CapturedChange): CapturedChange | undefined {
  const fields: Record<string, FieldValue> = {};
  let kept = 0;
  let dropped = false;
  for (const name in change.fields) {
    const value = change.fields[name]!;
    if (isRelation(value) ? value.added.length || value.removed.length : change.operation !== 'update' || !isDeepStrictEqual(value.from, value.to)) {
      fields[name] = value;
      kept++;
    } else {
      dropped = true;
    }
  }
  if (change.operation === 'update' && kept === 0 && !change.partial) return undefined;
  // Changes are never modified once made: one with nothing to drop is kept as it is (which
  // lets what was derived from it, such as its sanitised form, be reused).
  return dropped ? { ...change, fields } : change;
}

/** The many-to-many link fields of a change. */
function relationsOf(fields: Record<string, FieldValue>): Record<string, AuditRelationChange> {
  const relations: Record<string, AuditRelationChange> = {};
  for (const name in fields) {
    const value = fields[name]!;
    if (isRelation(value)) relations[name] = value;
  }
  return relations;
}

function mergeFields(
  first: Record<string, FieldValue>,
  second: Record<string, FieldValue>,
): Record<string, FieldValue> {
  const fields: Record<string, FieldValue> = { ...first };
  for (const [name, next] of Object.entries(second)) {
    const prev = fields[name];
    if (!prev) {
      fields[name] = next;
    } else if (isRelation(prev) && isRelation(next)) {
      const added = new Set(prev.added);
      const removed = new Set(prev.removed);
      for (const id of next.added) {
        if (!removed.delete(id)) added.add(id);
      }
      for (const id of next.removed) {
        if (!added.delete(id)) removed.add(id);
      }
      fields[name] = { added: [...added], removed: [...removed] };
    } else if (!isRelation(prev) && !isRelation(next)) {
      fields[name] = { from: prev.from, to: next.to };
    } else {
      fields[name] = next;
    }
  }
  return fields;
}

function merge(previous: CapturedChange, next: CapturedChange): CapturedChange | undefined {
  const partial = previous.partial || next.partial || undefined;
  const base = {
    entity: previous.entity,
    id: previous.id,
    at: previous.at,
    ...(previous.deleteDateField ? { deleteDateField: previous.deleteDateField } : {}),
    ...(partial ? { partial } : {}),
  };
  const ops: `${AuditChangeOperation}>${AuditChangeOperation}` = `${previous.operation}>${next.operation}`;
  switch (ops) {
    case 'insert>update':
      return prune({ ...base, operation: 'insert', fields: mergeFields(previous.fields, next.fields) });
    case 'update>insert':
      // Links written before their owner's insert was reported (TypeORM reports a new
      // entity's junction rows first): the insert, with those links.
      return prune({ ...base, operation: 'insert', fields: mergeFields(relationsOf(previous.fields), next.fields) });
    case 'insert>delete':
      return undefined;
    case 'update>update':
      return prune({ ...base, operation: 'update', fields: mergeFields(previous.fields, next.fields) });
    case 'update>delete': {
      // The deleted row's "from" is its value before this unit of work changed it; its
      // links are the net of those the unit changed and those removed with the row.
      const fields: Record<string, FieldValue> = { ...next.fields };
      for (const [name, value] of Object.entries(previous.fields)) {
        if (!isRelation(value)) fields[name] = { from: value.from, to: null };
      }
      return prune({ ...base, operation: 'delete', fields: { ...fields, ...mergeFields(relationsOf(previous.fields), relationsOf(next.fields)) } });
    }
    case 'delete>insert': {
      // The key deleted and inserted again: an update from the deleted row's values to the
      // inserted row's (fields that end as they were are dropped, links removed and added back too).
      const fields = mergeFields(relationsOf(previous.fields), relationsOf(next.fields));
      for (const name of new Set([...Object.keys(previous.fields), ...Object.keys(next.fields)])) {
        const before = previous.fields[name];
        const after = next.fields[name];
        if ((before && isRelation(before)) || (after && isRelation(after))) continue;
        fields[name] = { from: (before as AuditFieldChange | undefined)?.from ?? null, to: (after as AuditFieldChange | undefined)?.to ?? null };
      }
      return prune({ ...base, operation: 'update', fields });
    }
    case 'delete>update':
      // Links removed with a deleted row, reported after its delete: part of the delete.
      if (Object.values(next.fields).every(isRelation)) {
        return prune({ ...base, operation: 'delete', fields: mergeFields(previous.fields, next.fields) });
      }
      return prune({ ...next, at: previous.at, ...(partial ? { partial } : {}) });
    default:
      // update after delete, insert after insert: keep the later fact.
      return prune({ ...next, at: previous.at, ...(partial ? { partial } : {}) });
  }
}
