import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { DemoUser } from './demo-users.js';

/** The signed-in user (`request.user`, set by `TokenGuard`). */
export const CurrentUser = createParamDecorator(
  (_data: unknown, context: ExecutionContext): DemoUser => context.switchToHttp().getRequest<{ user: DemoUser }>().user,
);
