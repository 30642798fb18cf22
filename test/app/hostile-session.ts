import { Controller, Injectable, Param, ParseIntPipe, Patch, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited, type AuditActor, type AuditRequest } from '../../lib/index.js';
import { Order } from './order.entity.js';

/** The user a session guard puts on the request: an id, an email, and the session's bearer token. */
export interface SessionUser {
  id: number;
  email: string;
  accessToken: string;
}

/** A Passport-JWT-style guard: the user object keeps the token it was authenticated with. */
@Injectable()
export class SessionGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: SessionUser }>();
    const token = request.headers['authorization']?.replace(/^Bearer /, '');
    if (token) request.user = { id: 7, email: 'carol@example.com', accessToken: token };
    return true;
  }
}

/** An actor resolver that spreads the user object (the actor type allows no more, TypeScript lets a spread through). */
export const spreadUserActor = (request: AuditRequest): AuditActor | undefined => {
  const user = request.user as SessionUser | undefined;
  return user ? { type: 'user', ...user, id: String(user.id), display: user.email } : undefined;
};

/** Commits a change, then waits for the test to open the gate before returning. */
@Controller('hostile/session')
@UseGuards(SessionGuard)
export class SessionGatedController {
  private gates: Array<() => void> = [];

  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  open(): void {
    for (const gate of this.gates.splice(0)) gate();
  }

  @Patch('orders/:id')
  @Audited('order.touched')
  async touch(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update(id, { note: 'touched' });
    await new Promise<void>((resolve) => {
      this.gates.push(resolve);
      setTimeout(resolve, 20_000).unref();
    });
    return { id };
  }
}
