const EXCLUDED_ENTITY = Symbol.for('nestjs-system-audit:excluded-entity');
const EXCLUDED_FIELDS = Symbol.for('nestjs-system-audit:excluded-fields');

type Marked = { [EXCLUDED_ENTITY]?: boolean; [EXCLUDED_FIELDS]?: Set<string> };

/**
 * Keeps an entity (on the class) or one of its fields (on a property) out of the audit
 * trail: an excluded entity's changes are never captured; an excluded field never
 * appears in `changes`.
 *
 * @example
 * @Entity() @AuditExclude() export class Session { … }
 * @Entity() export class User { @Column() @AuditExclude() lastSeenAt: Date; }
 */
export function AuditExclude(): ClassDecorator & PropertyDecorator {
  return ((target: object, propertyKey?: string | symbol) => {
    if (propertyKey === undefined) {
      (target as Marked)[EXCLUDED_ENTITY] = true;
      return;
    }
    const owner = target.constructor as Marked;
    const inherited = owner[EXCLUDED_FIELDS];
    // Copy so that a subclass's exclusions do not leak into its parent.
    const fields = new Set(Object.prototype.hasOwnProperty.call(owner, EXCLUDED_FIELDS) ? inherited : inherited ?? []);
    fields.add(String(propertyKey));
    Object.defineProperty(owner, EXCLUDED_FIELDS, { value: fields, configurable: true, enumerable: false, writable: true });
  }) as ClassDecorator & PropertyDecorator;
}

/** True when the class (or a parent) is marked `@AuditExclude()`. */
export function isExcludedEntity(target: unknown): boolean {
  return typeof target === 'function' && (target as Marked)[EXCLUDED_ENTITY] === true;
}

/** The fields marked `@AuditExclude()` on the class and its parents. */
export function excludedFields(target: unknown): ReadonlySet<string> {
  return (typeof target === 'function' && (target as Marked)[EXCLUDED_FIELDS]) || EMPTY;
}

const EMPTY: ReadonlySet<string> = new Set();
