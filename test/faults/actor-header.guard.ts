import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';

/** The request header that names the caller: JSON `{ "id": "…", "display": "…" }`. */
export const ACTOR_HEADER = 'x-actor';

/**
 * Sets `request.user` from the `x-actor` header, as a Passport guard would from a token.
 * The header is JSON so that it can carry any string (NUL bytes, lone surrogates) as an
 * ASCII `\u` escape. No header, or one that is not such JSON: anonymous.
 */
@Injectable()
export class ActorHeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined>; user?: unknown }>();
    const header = request.headers[ACTOR_HEADER];
    if (typeof header !== 'string') return true;
    let actor: unknown;
    try {
      actor = JSON.parse(header);
    } catch {
      return true;
    }
    if (typeof actor === 'object' && actor !== null) {
      const { id, display } = actor as { id?: unknown; display?: unknown };
      if (typeof id === 'string') request.user = { id, ...(typeof display === 'string' ? { username: display } : {}) };
    }
    return true;
  }
}
