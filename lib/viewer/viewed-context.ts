import { field, filtersOf, readSearchForm } from './viewer-query.js';
import type { ViewerRequest } from './viewer-request.js';

/** The viewer's pages, as recorded in `audit.viewed`; `asset` (the stylesheet) is not recorded. */
export type ViewerPage = 'search' | 'event' | 'timeline' | 'asset';

/** Turns a clear actor id into the id `audit_log` stores (its pseudonym when actor ids are pseudonymised). */
export type StoredActorId = (id: string, type: string | undefined) => string | null;

const NOT_RECORDED = '[not recorded]';
const recorded = new WeakMap<object, Record<string, unknown>>();

/**
 * What a view was of, for its `audit.viewed` event: the search's filters, the event id,
 * or the target. An actor id searched for is recorded as `audit_log` stores it, so that a
 * clear id never lands in the trail when actor ids are pseudonymised.
 */
export function viewedContext(page: Exclude<ViewerPage, 'asset'>, request: ViewerRequest, storedActorId: StoredActorId): Record<string, unknown> {
  try {
    if (page === 'event') return { view: page, eventId: request.params?.['id'] };
    if (page === 'timeline') {
      const query = (request.query ?? {}) as Record<string, unknown>;
      return { view: page, target: { type: field(query, 'type'), id: field(query, 'id') } };
    }
    const filters = filtersOf(readSearchForm(request.query));
    if (filters['actorId'] !== undefined) {
      let stored: string | null | undefined;
      try {
        stored = storedActorId(filters['actorId'], filters['actorType']);
      } catch {
        stored = undefined; // refused by find() too (a pseudonym needs the actor type)
      }
      filters['actorId'] = stored ?? NOT_RECORDED;
    }
    return { view: page, query: filters };
  } catch (error) {
    return { view: page, invalidQuery: (error as Error).message };
  }
}

/** Keeps the context of a request's view (made before the application's guard runs). */
export function rememberView(request: object, context: Record<string, unknown>): void {
  recorded.set(request, context);
}

/** The context kept for a request's view. */
export function recalledView(request: unknown, page: ViewerPage): Record<string, unknown> {
  const kept = request !== null && typeof request === 'object' ? recorded.get(request) : undefined;
  return kept ?? { view: page };
}
