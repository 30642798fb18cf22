/**
 * The parameter arrays of the module's own statements (journal rows, stored events):
 * the subscriber sees every statement, and these are known not to be the app's raw
 * writes, so they skip the statement parser.
 */
const own = new WeakSet<object>();

/** Marks `parameters` as those of one of the module's own statements; returns them. */
export function ownStatement<T extends unknown[]>(parameters: T): T {
  own.add(parameters);
  return parameters;
}

export function isOwnStatement(parameters: unknown): boolean {
  return typeof parameters === 'object' && parameters !== null && own.has(parameters);
}
