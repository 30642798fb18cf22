import {
  Body,
  Controller,
  ForbiddenException,
  Injectable,
  NotFoundException,
  Param,
  ParseIntPipe,
  Post,
  UnauthorizedException,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited, AuditSource } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';
import { User } from './user.entity.js';

@Injectable()
class AdminOnlyGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const user = context.switchToHttp().getRequest<{ user?: { roles: string[] } }>().user;
    if (!user?.roles.includes('admin')) throw new ForbiddenException('Admins only');
    return true;
  }
}

/** A login guard that counts failed attempts on the user before it rejects. */
@Injectable()
class PasswordGuard implements CanActivate {
  constructor(@InjectRepository(User) private readonly users: Repository<User>) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const { body } = context.switchToHttp().getRequest<{ body: { email: string; password: string } }>();
    const user = await this.users.findOneBy({ email: body.email });
    if (user && user.password === body.password) return true;
    if (user) {
      user.failedLogins += 1;
      await this.users.save(user);
    }
    throw new UnauthorizedException('Bad credentials');
  }
}

@Controller('admin')
@AuditSource('admin')
@UseGuards(TokenGuard, AdminOnlyGuard)
export class AdminController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post('orders/:id/refund')
  @Audited('order.refunded', { target: ({ params }) => ({ type: 'order', id: params['id']! }), reason: 'customer complaint' })
  async refund(@Param('id', ParseIntPipe) id: number): Promise<Order> {
    const order = await this.orders.findOneBy({ id });
    if (!order) throw new NotFoundException();
    order.status = 'refunded';
    return this.orders.save(order);
  }
}

@Controller('auth')
export class AuthController {
  @Post('login')
  @UseGuards(PasswordGuard)
  @Audited('auth.login')
  login(@Body() body: { email: string }): { ok: true; email: string } {
    return { ok: true, email: body.email };
  }
}
