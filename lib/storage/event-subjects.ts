import type { EntityMetadata } from 'typeorm';
import { isSizeMarker } from '../events/event-bounds.js';
import { MAX_ID_LENGTH } from '../events/json-safe.js';
import type { AuditLogEntity } from './audit-log.entity.js';

/** The longest `subject_type` and `subject_id` the table holds (as `target_type` and `target_id`). */
const MAX_TYPE = 128;

/** `Order` and `order` name the same type (as `history()` reads them). */
const subjectKey = (type: string, id: string): string => `${type.charAt(0).toLowerCase()}${type.slice(1)}\u0000${id}`;

/** One entity instance an event is about. */
export interface EventSubject {
  type: string;
  id: string;
}

/**
 * The entity instances an `audit_log` row is about besides its target, for
 * `audit_subject`: the instance each of its changes names, and the instances a
 * many-to-many change links or unlinks (`{ added, removed }` of a relation field, whose
 * entity is read from the data source's metadata: a `User.favorites` change names
 * `Article` rows). Each instance once per event; none for an event whose changes name
 * only its target (most events: their write costs nothing more). Computed from the row
 * alone, with one map lookup per relation field.
 */
export class EventSubjects {
  /** `entity\0field` → the related entity's name (`null`: not a many-to-many relation). */
  private readonly related = new Map<string, string | null>();

  /** @param entities the entity metadata of every captured data source (the links' types come from it). */
  constructor(private readonly entities: () => readonly EntityMetadata[]) {}

  of(row: AuditLogEntity): EventSubject[] {
    const subjects: EventSubject[] = [];
    const seen = new Set<string>();
    // The target is found through `audit_log`'s own index: not repeated here.
    if (row.targetType && row.targetId) seen.add(subjectKey(row.targetType, row.targetId));
    const add = (type: string, id: string | null | undefined): void => {
      if (id === null || id === undefined || id === '' || type.length > MAX_TYPE || id.length > MAX_ID_LENGTH || isSizeMarker(id)) return;
      const key = subjectKey(type, id);
      if (seen.has(key)) return;
      seen.add(key);
      subjects.push({ type, id });
    };
    for (const change of row.changes ?? []) {
      if (typeof change?.entity !== 'string') continue;
      add(change.entity, typeof change.id === 'string' ? change.id : null);
      for (const field in change.fields) {
        const value = change.fields[field]!;
        if (!value || !('added' in value) || !Array.isArray(value.added) || !Array.isArray(value.removed)) continue;
        const type = this.relatedEntity(change.entity, field);
        if (!type) continue;
        for (const id of value.added) add(type, String(id));
        for (const id of value.removed) add(type, String(id));
      }
    }
    return subjects;
  }

  /** The entity a many-to-many relation field of `entity` points to, if the data source knows it. */
  private relatedEntity(entity: string, field: string): string | null {
    const key = `${entity}\u0000${field}`;
    let type = this.related.get(key);
    if (type === undefined) {
      const metadata = this.entities().find((candidate) => candidate.name === entity);
      const relation = metadata?.relations.find((candidate) => candidate.propertyPath === field && candidate.isManyToMany);
      type = relation?.inverseEntityMetadata.name ?? null;
      this.related.set(key, type);
    }
    return type;
  }
}
