import type { EntityMetadata } from 'typeorm';
import { fieldName } from '../capture/entity-snapshot.js';
import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';
import type { AuditEntityRef } from '../interfaces/audit-module-options.interface.js';
import { AuditEntities } from '../storage/audit-entities.js';
import type { ResolvedAuditOptions } from './audit-options.js';

/** Names listed in full in an error when none is near the unknown one, at most. */
const MAX_LISTED = 20;

/**
 * Checks the entity and field names of `includeEntities`, `excludeEntities` and
 * `excludeFields` against the data source's entities, once they are known (at start-up):
 * a name that matches nothing would silently capture nothing, or exclude nothing.
 * Entities are matched as capture matches them (a class, an entity name, or for the
 * entity lists a table name); fields by property path, a to-one relation by its name.
 *
 * @throws InvalidAuditOptionsError naming the first unknown name and its near matches.
 */
export function checkEntityOptions(options: ResolvedAuditOptions, entityMetadatas: readonly EntityMetadata[]): void {
  const audit: ReadonlySet<unknown> = new Set(AuditEntities);
  const entities = entityMetadatas.filter(
    (metadata) => !audit.has(metadata.target) && metadata.tableType !== 'junction' && metadata.tableType !== 'closure-junction',
  );
  const metadataOf = (ref: AuditEntityRef) =>
    entityMetadatas.find((metadata) => (typeof ref === 'function' ? metadata.target === ref : metadata.name === ref || metadata.tableName === ref));
  const checkRefs = (option: string, refs: readonly AuditEntityRef[] | undefined) => {
    for (const ref of refs ?? []) {
      if (!metadataOf(ref)) throw unknownEntity(option, typeof ref === 'function' ? `class ${ref.name}` : JSON.stringify(ref), typeof ref === 'function' ? ref.name : ref, entities);
    }
  };
  checkRefs('includeEntities', options.includeEntities);
  checkRefs('excludeEntities', options.excludeEntities);
  // Listed in both, an entity would be captured or not by an order of precedence nobody wrote down.
  const included = new Set((options.includeEntities ?? []).map(metadataOf));
  for (const ref of options.excludeEntities) {
    const metadata = metadataOf(ref);
    if (!metadata || !included.has(metadata)) continue;
    const given = typeof ref === 'string' && ref !== metadata.name ? ` (${JSON.stringify(ref)})` : '';
    throw new InvalidAuditOptionsError('excludeEntities', `entity ${JSON.stringify(metadata.name)}${given} is also in includeEntities: list it in one of them`);
  }

  for (const [entity, fields] of options.excludeFields) {
    const metadata = entityMetadatas.find((candidate) => candidate.name === entity);
    if (!metadata) throw unknownEntity('excludeFields', JSON.stringify(entity), entity, entities);
    const known = fieldsOf(metadata);
    for (const field of fields) {
      if (known.includes(field)) continue;
      throw new InvalidAuditOptionsError(
        'excludeFields',
        `entity ${JSON.stringify(entity)} has no field ${JSON.stringify(field)} (${suggestion(field, known.map((name) => [name, name]), 'its fields')})`,
      );
    }
  }
}

function unknownEntity(option: string, shown: string, name: string, entities: EntityMetadata[]): InvalidAuditOptionsError {
  const candidates = entities.flatMap((metadata): Array<[string, string]> => [
    [metadata.name, metadata.name],
    [metadata.tableName, metadata.name],
  ]);
  return new InvalidAuditOptionsError(option, `${shown} is not an entity of the data source (${suggestion(name, candidates, 'its entities')})`);
}

/** The names a field of `metadata` can be excluded by: columns' property paths, to-one relations' and many-to-many relations' names. */
function fieldsOf(metadata: EntityMetadata): string[] {
  const names = new Set<string>();
  for (const column of metadata.columns) {
    names.add(column.propertyPath);
    names.add(fieldName(column));
  }
  for (const relation of metadata.relations) names.add(relation.propertyPath);
  return [...names];
}

/**
 * `did you mean "A" or "B"?` for the candidates near `name` (each a name to compare and
 * the name to suggest), else the list of what there is.
 */
function suggestion(name: string, candidates: Array<[compared: string, suggested: string]>, listLabel: string): string {
  const near = [...new Set(candidates.filter(([compared]) => isNear(name, compared)).map(([, suggested]) => suggested))];
  if (near.length) return `did you mean ${near.map((candidate) => JSON.stringify(candidate)).join(' or ')}?`;
  const all = [...new Set(candidates.map(([, suggested]) => suggested))].sort();
  if (all.length === 0) return 'it has none';
  return `${listLabel}: ${all.slice(0, MAX_LISTED).join(', ')}${all.length > MAX_LISTED ? ', …' : ''}`;
}

/** Same name in another case, one a prefix of the other, or at most two edits apart (one for short names). */
export function isNear(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  if (x === y) return true;
  if (Math.min(x.length, y.length) >= 3 && (x.startsWith(y) || y.startsWith(x))) return true;
  const allowed = Math.min(x.length, y.length) <= 4 ? 1 : 2;
  return Math.abs(x.length - y.length) <= allowed && editDistance(x, y) <= allowed;
}

/** Levenshtein distance between two strings. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
