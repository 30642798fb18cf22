// Start-up errors for option values written by mistake: each names the option and
// says what was given, or what to do, in words that agree with the documentation.
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditModule, AuditViewerModule, InvalidAuditOptionsError } from '../../lib/index.js';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

/** Boots an app on SQLite with the given modules; resolves with the start-up error, or undefined. */
async function startError(...modules: unknown[]): Promise<Error | undefined> {
  try {
    const moduleRef = await Test.createTestingModule({
      imports: [TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', autoLoadEntities: true, synchronize: true }), ...(modules as never[])],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    closers.push(() => app.close());
    await app.init();
    return undefined;
  } catch (error) {
    return error as Error;
  }
}

class AdminGuard {
  canActivate(): boolean {
    return true;
  }
}

describe('option errors of common mistakes', () => {
  it('a whole-number option given NaN (Number() of an unset variable) says it got NaN, not null', () => {
    expect(() => resolveAuditOptions({ maxQueuedEvents: Number(undefined) })).toThrow(InvalidAuditOptionsError);
    expect(() => resolveAuditOptions({ maxQueuedEvents: Number(undefined) })).toThrow(/"maxQueuedEvents": must be a whole number from 1 to 10000000, got NaN/);
    expect(() => resolveAuditOptions({ queueTimeout: Infinity })).toThrow(/"queueTimeout": must be a whole number from 1 to 600000, got Infinity/);
  });

  it('AuditModule.forRoot(null) is refused with InvalidAuditOptionsError, or taken as no options as resolveAuditOptions(null) is, never a TypeError', () => {
    let thrown: unknown;
    try {
      AuditModule.forRoot(null as never);
    } catch (error) {
      thrown = error;
    }
    if (thrown !== undefined) expect(thrown).toBeInstanceOf(InvalidAuditOptionsError);
  });

  it('an array given as the options object is refused like any other non-object', () => {
    expect(() => resolveAuditOptions('x' as never)).toThrow(/"options": must be an object/);
    expect(() => resolveAuditOptions([] as never)).toThrow(/"options": must be an object/);
  });

  it('a registerAsync factory that returns path is told to pass path to registerAsync(), not that path is no option', async () => {
    const error = await startError(AuditModule.forRoot(), AuditViewerModule.registerAsync({ useFactory: () => ({ guard: new AdminGuard(), path: '/admin/audit' }) }));
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect(error!.message).not.toMatch(/"path": is not an AuditViewerModule option/);
    expect(error!.message).toMatch(/"path".*registerAsync/);
  });
});
