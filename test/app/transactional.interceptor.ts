import {
  createParamDecorator,
  Injectable,
  SetMetadata,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectDataSource } from '@nestjs/typeorm';
import { from, lastValueFrom, type Observable } from 'rxjs';
import type { DataSource, EntityManager } from 'typeorm';

const TRANSACTIONAL = 'test:transactional';
const MANAGER = Symbol('test:transaction-manager');

/** How `TransactionalInterceptor` runs a handler. */
export interface TransactionalOptions {
  /** Throw after the handler returned, so that the transaction rolls back. */
  failAfterHandler?: boolean;
}

/** Runs the handler inside one database transaction opened by `TransactionalInterceptor`. */
export const Transactional = (options: TransactionalOptions = {}) => SetMetadata(TRANSACTIONAL, options);

/** The `EntityManager` of the transaction `TransactionalInterceptor` opened for this request. */
export const TransactionManager = createParamDecorator(
  (_: unknown, ctx: ExecutionContext): EntityManager => ctx.switchToHttp().getRequest<{ [MANAGER]: EntityManager }>()[MANAGER],
);

/**
 * What many applications register as an `APP_INTERCEPTOR`: wraps each `@Transactional()`
 * handler in `dataSource.transaction(...)`, hands the handler the transaction's manager
 * through the request, and commits after the handler's result is ready.
 */
@Injectable()
export class TransactionalInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const options = this.reflector.get<TransactionalOptions | undefined>(TRANSACTIONAL, ctx.getHandler());
    if (!options || ctx.getType() !== 'http') return next.handle();
    const request = ctx.switchToHttp().getRequest<{ [MANAGER]?: EntityManager }>();
    return from(
      this.dataSource.transaction(async (manager) => {
        request[MANAGER] = manager;
        const result = await lastValueFrom(next.handle(), { defaultValue: undefined });
        if (options.failAfterHandler) throw new Error('the transaction was refused after the handler returned');
        return result;
      }),
    );
  }
}
