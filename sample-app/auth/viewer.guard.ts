import { Injectable, type ExecutionContext } from '@nestjs/common';
import { AdminGuard } from './admin.guard.js';
import { viewerCookie, viewerToken, type SessionRequest } from './viewer-session.js';

/**
 * The audit viewer's guard: admins only (after the global `TokenGuard` signed the user
 * in). A token given as `?token=` is kept in an HttpOnly cookie, so the viewer's links and
 * its stylesheet need no token in the URL.
 */
@Injectable()
export class ViewerGuard extends AdminGuard {
  override canActivate(context: ExecutionContext): boolean {
    super.canActivate(context);
    const http = context.switchToHttp();
    const given = viewerToken(http.getRequest<SessionRequest>());
    if (given?.from === 'query') http.getResponse<{ setHeader(name: string, value: string): void }>().setHeader('Set-Cookie', viewerCookie(given.token));
    return true;
  }
}
