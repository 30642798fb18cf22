import { Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';

/** The fixture's users, by bearer token. */
export const USERS: Record<string, { id: number; email: string; roles: string[] }> = {
  'alice-token': { id: 1, email: 'alice@example.com', roles: ['admin'] },
  'bob-token': { id: 2, email: 'bob@example.com', roles: [] },
};

/** A Passport-style guard: sets `request.user` from `Authorization: Bearer <token>`. */
@Injectable()
export class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: unknown }>();
    const token = request.headers['authorization']?.replace(/^Bearer /, '');
    if (token === undefined) return true; // anonymous
    // `user-<n>`: one of many generated users, for concurrency tests.
    const numbered = /^user-(\d+)$/.exec(token);
    const user = numbered ? { id: 1000 + Number(numbered[1]), email: `user${numbered[1]}@example.com`, roles: [] } : USERS[token];
    if (!user) throw new UnauthorizedException('Unknown token');
    request.user = user;
    return true;
  }
}
