import { Catch, Controller, ForbiddenException, Get, Injectable, Param, ParseIntPipe, Post, UseGuards, type ArgumentsHost, type CanActivate, type ExceptionFilter, type ExecutionContext } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityNotFoundError } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { changesOf, CtrItem, contractAppFor, type ContractApp } from './contract-app.js';

const LONG_DENIAL = `Denied: ${'d'.repeat(600)}`;

/** Counts the attempt on the item (a failed-login counter), then turns the caller away. */
@Injectable()
class CountingDenyGuard implements CanActivate {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<{ params: { id: string } }>();
    await this.dataSource.getRepository(CtrItem).update(Number(request.params.id), { status: 'attempted' });
    throw new ForbiddenException(LONG_DENIAL);
  }
}

/** TypeORM's not-found as a 404, as apps map it. */
@Catch(EntityNotFoundError)
class NotFoundFilter implements ExceptionFilter {
  catch(_error: EntityNotFoundError, host: ArgumentsHost): void {
    host
      .switchToHttp()
      .getResponse<{ status(code: number): { json(body: unknown): void } }>()
      .status(404)
      .json({ statusCode: 404, message: 'no such item' });
  }
}

@Controller('ctr-req')
class RequestDataController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post('reset/:resetToken')
  @Audited('ctr.req.reset')
  reset(): { ok: true } {
    return { ok: true };
  }

  @Post('guarded/:id')
  @UseGuards(CountingDenyGuard)
  @Audited('ctr.req.guarded')
  guarded(): { ok: true } {
    return { ok: true };
  }

  @Get('items/:id')
  @Audited('ctr.req.item')
  item(@Param('id', ParseIntPipe) id: number): Promise<CtrItem> {
    return this.dataSource.getRepository(CtrItem).findOneByOrFail({ id });
  }
}

describe.each(databases())('contract: request data, denials and mapped errors, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [RequestDataController], providers: [CountingDenyGuard, { provide: APP_FILTER, useClass: NotFoundFilter }] }, (app) => (t = app));

  const last = async (action: string) => (await t.rows()).filter((row) => row.action === action).at(-1)!;

  it.each([
    ['129 characters', 'a'.repeat(129)],
    ['a space', 'abc def'],
    ['a non-ASCII letter', 'abcé'],
    ['a comma (a second header value)', 'abc,def'],
  ])('an X-Request-Id with %s is replaced by a new UUID v7, echoed and stored', async (_, given) => {
    const response = await t.request('/ctr-req/reset/abc', { method: 'POST', headers: { 'x-request-id': given } });
    expect(response.status).toBe(201);
    const echoed = response.headers.get('x-request-id')!;
    expect(echoed).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect((await last('ctr.req.reset')).requestId).toBe(echoed);
  });

  it('a valid 128-character X-Request-Id is kept as given', async () => {
    const given = `${'A1._:@/+=-'.repeat(12)}abcdefgh`;
    expect(given).toHaveLength(128);
    const response = await t.request('/ctr-req/reset/abc', { method: 'POST', headers: { 'x-request-id': given } });
    expect(response.headers.get('x-request-id')).toBe(given);
    expect((await last('ctr.req.reset')).requestId).toBe(given);
  });

  it('path without the query string, a secret route parameter masked, the route as its pattern, a forged X-Forwarded-For ignored, a long user agent cut', async () => {
    const response = await t.request('/ctr-req/reset/s3cr3t-value?token=abc&x=1', {
      method: 'POST',
      headers: { 'x-forwarded-for': '203.0.113.9', 'user-agent': `agent/${'u'.repeat(5000)}` },
    });
    expect(response.status).toBe(201);
    const row = await last('ctr.req.reset');
    expect([row.method, row.route, row.path, row.ip]).toEqual(['POST', '/ctr-req/reset/:resetToken', '/ctr-req/reset/[REDACTED]', '127.0.0.1']);
    expect(row.userAgent!.startsWith('agent/uuu')).toBe(true);
    expect(row.userAgent!.length).toBeLessThanOrEqual(512);
    expect(JSON.stringify(row)).not.toContain('s3cr3t-value');
  });

  it('a guard that writes then denies: 403 to the client; one failure with the status, the message cut to 512, and the guard’s change', async () => {
    const item = await t.dataSource.getRepository(CtrItem).save({ name: 'guarded' });
    const response = await t.request(`/ctr-req/guarded/${item.id}`, { method: 'POST' });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ message: LONG_DENIAL });
    const rows = (await t.rows()).filter((row) => row.action === 'ctr.req.guarded');
    expect(rows.map((row) => [row.kind, row.outcome])).toEqual([['intent', 'failure']]);
    expect(rows[0]!.error).toEqual({ name: 'ForbiddenException', status: 403, message: LONG_DENIAL.slice(0, 512) });
    expect(changesOf(rows, 'CtrItem')).toEqual([expect.objectContaining({ id: String(item.id), fields: { status: { from: 'new', to: 'attempted' } } })]);
    // The guard's update is in the denial's event only, not also a fallback.
    expect(changesOf(await t.rows(), 'CtrItem').filter((change) => change.operation === 'update')).toHaveLength(1);
  });

  it('EntityNotFoundError answered 404 by an exception filter: the event’s error has that status', async () => {
    const response = await t.request('/ctr-req/items/987654');
    expect(response.status).toBe(404);
    const row = await last('ctr.req.item');
    expect([row.outcome, row.error]).toEqual(['failure', { name: 'EntityNotFoundError', status: 404 }]);
  });
});
