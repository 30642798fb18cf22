import { ForbiddenException, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { USERS } from './token.guard.js';

/** The viewer's guard in the fixtures: `Authorization: Bearer <token>` of an admin, else 403. */
@Injectable()
export class ViewerAdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: unknown }>();
    const user = USERS[request.headers['authorization']?.replace(/^Bearer /, '') ?? ''];
    if (!user?.roles.includes('admin')) throw new ForbiddenException('Admins only');
    request.user = user;
    return true;
  }
}
