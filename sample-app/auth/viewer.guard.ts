import { Injectable, type ExecutionContext } from '@nestjs/common';
import { AdminGuard } from './admin.guard.js';
import { DEMO_USERS, type DemoUser } from './demo-users.js';
import { viewerCookie, viewerToken, type SessionRequest } from './viewer-session.js';

/**
 * The audit viewer's guard: admins only (after the global `TokenGuard` signed the user
 * in). A token given as `?token=` that signed the request in is kept in an HttpOnly
 * cookie, so the viewer's links and its stylesheet need no token in the URL.
 */
@Injectable()
export class ViewerGuard extends AdminGuard {
  override canActivate(context: ExecutionContext): boolean {
    super.canActivate(context);
    const http = context.switchToHttp();
    const request = http.getRequest<SessionRequest & { user?: DemoUser }>();
    const given = viewerToken(request);
    // Only the token that signed this request in (an Authorization header wins over ?token=).
    if (given?.from === 'query' && DEMO_USERS[given.token] === request.user) http.getResponse<{ setHeader(name: string, value: string): void }>().setHeader('Set-Cookie', viewerCookie(given.token));
    return true;
  }
}
