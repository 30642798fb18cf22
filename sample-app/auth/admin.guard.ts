import { ForbiddenException, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { isAdmin, type DemoUser } from './demo-users.js';

/** Lets admins through; everyone else gets 403. Runs after the global `TokenGuard`. */
@Injectable()
export class AdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const { user } = context.switchToHttp().getRequest<{ user?: DemoUser }>();
    if (!isAdmin(user)) throw new ForbiddenException('Admins only');
    return true;
  }
}
