import {
  BadRequestException,
  Catch,
  ConflictException,
  Controller,
  Injectable,
  Param,
  Post,
  UseFilters,
  type ArgumentsHost,
  type CallHandler,
  type ExceptionFilter,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { from, lastValueFrom, type Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class Gone extends Error {}
class Settled extends Error {}

/** Rethrows what it catches as a 400 (a filter that translates instead of answering). */
@Catch(Gone)
class RethrowFilter implements ExceptionFilter {
  catch(error: Gone): void {
    throw new BadRequestException(`translated: ${error.message}`);
  }
}

/** Answers 200 for an error the app counts as done. */
@Catch(Settled)
class SettledFilter implements ExceptionFilter {
  catch(_error: Settled, host: ArgumentsHost): void {
    host.switchToHttp().getResponse<{ status(code: number): { send(body: unknown): void } }>().status(200).send({ settled: true });
  }
}

/** After the handler (after a delay the path names), throws the error the path names. */
@Injectable()
class LateRefusal implements NestInterceptor {
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const { kind, delay } = ctx.switchToHttp().getRequest<{ params: { kind: string; delay: string } }>().params;
    return from(
      (async () => {
        const value = await lastValueFrom(next.handle(), { defaultValue: undefined });
        await sleep(Number(delay));
        if (kind === 'conflict') throw new ConflictException(`conflict after ${delay}`);
        if (kind === 'type') throw new TypeError('commit went wrong');
        if (kind === 'gone') throw new Gone('gone');
        if (kind === 'settled') throw new Settled('settled');
        return value;
      })(),
    );
  }
}

@Controller('late')
@UseFilters(RethrowFilter, SettledFilter)
class LateController {
  @Post(':kind/:delay')
  @Audited('late.done')
  async done(@Param('kind') kind: string): Promise<{ kind: string }> {
    await sleep(5);
    return { kind };
  }
}

describe.each(databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const)))('errors of an app-level interceptor after the handler, at once, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [LateController], providers: [{ provide: APP_INTERCEPTOR, useClass: LateRefusal }] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('twelve concurrent requests: each event names its own error', async () => {
    const kinds = ['conflict', 'type', 'ok'];
    const sent = Array.from({ length: 12 }, (_, n) => ({ kind: kinds[n % 3]!, delay: (12 - n) * 5, id: `late-${kind}-${adapter}-${n}` }));
    const statuses = await Promise.all(
      sent.map(async (each) => (await t.request(`/late/${each.kind}/${each.delay}`, { method: 'POST', headers: { 'x-request-id': each.id } })).status),
    );
    expect(statuses).toEqual(sent.map((each) => (each.kind === 'conflict' ? 409 : each.kind === 'type' ? 500 : 201)));
    const rows = await t.rows();
    const byId = new Map(rows.map((row) => [row.requestId, row]));
    for (const each of sent) {
      const row = byId.get(each.id);
      const expected =
        each.kind === 'conflict'
          ? ['failure', { name: 'ConflictException', status: 409, message: `conflict after ${each.delay}` }]
          : each.kind === 'type'
            ? ['failure', { name: 'TypeError' }]
            : ['success', null];
      expect([row?.outcome, row?.error], each.id).toEqual(expected);
    }
  });

  it('a route filter that rethrows as a 400: a failure naming the error the client got an answer for', async () => {
    const response = await t.request('/late/gone/0', { method: 'POST' });
    expect(response.status).toBe(400);
    expect((await t.rows()).map((row) => [row.outcome, row.error])).toEqual([
      ['failure', { name: 'BadRequestException', status: 400, message: 'translated: gone' }],
    ]);
  });

  it('a route filter answering 200: the event is a success', async () => {
    const response = await t.request('/late/settled/0', { method: 'POST' });
    expect(response.status).toBe(200);
    expect((await t.rows()).map((row) => [row.outcome, row.error])).toEqual([['success', null]]);
  });
});

describe.each(databases().filter((kind) => kind === 'sqlite'))('two apps in one process, one closed, on %s', (kind) => {
  it('the app left, and one started after the close, still name the error of their app-level interceptor', async () => {
    const dbs = await Promise.all([createTestDatabase(kind), createTestDatabase(kind), createTestDatabase(kind)]);
    const start = (db: TestDatabase) =>
      createTestApp({ db, adapter: 'express', controllers: [LateController], providers: [{ provide: APP_INTERCEPTOR, useClass: LateRefusal }] });
    const apps: TestApp[] = [];
    try {
      apps.push(await start(dbs[0]!), await start(dbs[1]!));
      await apps[0]!.close();
      apps.push(await start(dbs[2]!));
      for (const app of apps.slice(1)) {
        await app.clearAudit();
        expect((await app.request('/late/conflict/0', { method: 'POST' })).status).toBe(409);
        expect((await app.rows()).map((row) => [row.outcome, row.error?.name])).toEqual([['failure', 'ConflictException']]);
      }
    } finally {
      for (const app of apps.slice(1)) await app.close();
      for (const db of dbs) await db.drop();
    }
  });
});
