// Start-up errors for option values written by mistake: each names the option and
// says what was given, or what to do, in words that agree with the documentation.
import { generateKeyPairSync } from 'node:crypto';
import { Injectable, Module } from '@nestjs/common';
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

  it('AuditViewerModule without AuditModule fails start-up saying to import AuditModule, not with a DI error', async () => {
    const error = await startError(AuditViewerModule.register({ guard: new AdminGuard() }));
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toMatch(/AuditViewerModule needs AuditModule: import AuditModule\.forRoot\(\) or AuditModule\.forRootAsync\(\)/);
    expect(error!.message).not.toMatch(/can't resolve dependencies/);
  });

  it.each<[string, () => unknown, RegExp]>([
    ['AuditModule.forRootAsync({})', () => AuditModule.forRootAsync({}), /AuditModule option "forRootAsync": needs one of useFactory, useClass or useExisting/],
    [
      'AuditModule.forRootAsync with two ways',
      () => AuditModule.forRootAsync({ useFactory: () => ({}), useClass: OptionsWithoutMethod as never }),
      /AuditModule option "forRootAsync": needs one of useFactory, useClass or useExisting, got useFactory, useClass/,
    ],
    [
      'AuditModule.forRootAsync useClass without createAuditOptions()',
      () => AuditModule.forRootAsync({ useClass: OptionsWithoutMethod as never }),
      /AuditModule option "forRootAsync": useClass OptionsWithoutMethod has no createAuditOptions\(\) method/,
    ],
    ['AuditViewerModule.registerAsync({})', () => AuditViewerModule.registerAsync({}), /AuditViewerModule option "registerAsync": needs one of useFactory, useClass or useExisting/],
    [
      'AuditViewerModule.registerAsync useClass without createAuditViewerOptions()',
      () => AuditViewerModule.registerAsync({ useClass: OptionsWithoutMethod as never }),
      /AuditViewerModule option "registerAsync": useClass OptionsWithoutMethod has no createAuditViewerOptions\(\) method/,
    ],
  ])('%s is refused naming what is missing', (_name, register, message) => {
    expect(register).toThrow(InvalidAuditOptionsError);
    expect(register).toThrow(message);
  });

  it('useExisting of a provider without createAuditOptions() fails start-up naming the method, not with a TypeError', async () => {
    const error = await startError(AuditModule.forRootAsync({ imports: [OptionsHolderModule], useExisting: OptionsWithoutMethod as never }));
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect(error!.message).toMatch(/AuditModule option "forRootAsync": useExisting OptionsWithoutMethod has no createAuditOptions\(\) method/);
  });

  it('the unknown-option message lists dataSource among the options', () => {
    expect(() => resolveAuditOptions({ datasource: 'reports' } as never)).toThrow(/"datasource": is not an option of AuditModule \(known: [^)]*\bdataSource\b/);
  });

  it('a trustProxy hop count above the hops the module reads is refused, pointing to true', () => {
    expect(() => resolveAuditOptions({ trustProxy: 32 })).not.toThrow();
    expect(() => resolveAuditOptions({ trustProxy: 1e9 })).toThrow(/"trustProxy": a hop count must be from 0 to 32, got 1000000000 \(use true to trust every hop\)/);
  });

  it('a PEM whose line breaks are the two characters \\n (as an environment variable holds it) is refused saying so', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const escaped = (key: string) => key.replace(/\n/g, '\\n');
    const signingKey = escaped(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const verificationKey = escaped(publicKey.export({ type: 'spki', format: 'pem' }) as string);
    expect(() => resolveAuditOptions({ integrity: { signingKey, origin: 'audit.example.com/orders' } })).toThrow(
      /"integrity.signingKey": is a PEM whose line breaks are the two characters \\n/,
    );
    expect(() => resolveAuditOptions({ integrity: { signingKey: privateKey, origin: 'audit.example.com/orders', verificationKeys: [verificationKey] } })).toThrow(
      /"integrity.verificationKeys": item 0 is a PEM whose line breaks are the two characters \\n/,
    );
  });
});

/** An options class written without the factory method the module calls. */
@Injectable()
class OptionsWithoutMethod {}

@Module({ providers: [OptionsWithoutMethod], exports: [OptionsWithoutMethod] })
class OptionsHolderModule {}

