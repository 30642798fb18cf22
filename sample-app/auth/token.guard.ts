import { Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { DEMO_USERS, type DemoUser } from './demo-users.js';

/** Sets `request.user` from `Authorization: Bearer <token>`; every route needs a known token. */
@Injectable()
export class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: DemoUser }>();
    const match = /^Bearer (\S+)$/.exec(request.headers['authorization'] ?? '');
    if (!match) throw new UnauthorizedException('Send "Authorization: Bearer <token>", e.g. bob-token or alice-token');
    const user = DEMO_USERS[match[1]!];
    if (!user) throw new UnauthorizedException('Unknown token');
    request.user = user;
    return true;
  }
}
