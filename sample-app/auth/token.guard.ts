import { Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { DEMO_USERS, type DemoUser } from './demo-users.js';
import { viewerToken, type SessionRequest } from './viewer-session.js';

/**
 * Sets `request.user` from `Authorization: Bearer <token>`; every route needs a known token.
 * The audit viewer's pages also take it from `?token=` or their cookie (see viewer-session.ts).
 */
@Injectable()
export class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<SessionRequest & { user?: DemoUser }>();
    const header = request.headers['authorization'];
    const match = /^Bearer (\S+)$/.exec(typeof header === 'string' ? header : '');
    const token = match?.[1] ?? viewerToken(request)?.token;
    if (token === undefined) throw new UnauthorizedException('Send "Authorization: Bearer <token>", e.g. bob-token or alice-token');
    const user = DEMO_USERS[token];
    if (!user) throw new UnauthorizedException('Unknown token');
    request.user = user;
    return true;
  }
}
