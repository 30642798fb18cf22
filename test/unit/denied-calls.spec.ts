import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { UnitOfWork } from '../../lib/context/unit-of-work.js';
import type { UnitOfWorkFactory } from '../../lib/context/unit-of-work.factory.js';
import type { AuditedMetadata } from '../../lib/decorators/audited.decorator.js';
import { DeniedCalls } from '../../lib/guard/denied-calls.js';
import type { AuditedIntentFactory } from '../../lib/interceptor/audited-intent.factory.js';
import type { ResolvedAuditOptions } from '../../lib/options/audit-options.js';
import type { AuditRecorder } from '../../lib/service/audit-recorder.js';

const AUDITED = { action: 'order.voided' } as AuditedMetadata;

/** DeniedCalls over stubs: each noted call gets a unit `{ n }`; `settled` lists the units stored. */
function deniedCalls() {
  let n = 0;
  const settled: unknown[] = [];
  const units = { forHandler: () => ({ unit: { n: ++n } as unknown as UnitOfWork, own: true }) } as unknown as UnitOfWorkFactory;
  const intents = { settleDenied: (unit: UnitOfWork) => settled.push(unit) } as unknown as AuditedIntentFactory;
  const recorder = { end: async () => undefined } as unknown as AuditRecorder;
  const calls = new DeniedCalls(units, intents, recorder, { enabled: true } as ResolvedAuditOptions);
  return { calls, settled };
}

/** The context Nest gives a gateway's guards, interceptors or exception filter: `[client, data, …]`, type `ws`. */
const ws = (...args: unknown[]) => {
  const host = new ExecutionContextHost(args);
  host.setType('ws');
  return host;
};

describe('DeniedCalls: WebSocket calls whose payload is not an object', () => {
  afterEach(() => vi.restoreAllMocks());

  it('each client’s call is found by its own arguments, whichever is turned away first', () => {
    const { calls, settled } = deniedCalls();
    const [a, b] = [{}, {}];
    calls.note(ws(a, 7, 'order.void'), AUDITED, undefined);
    calls.note(ws(b, 7, 'order.void'), AUDITED, undefined);
    calls.note(ws(b, '7', 'order.void'), AUDITED, undefined);
    expect(calls.settle(ws(b, 7, 'order.void'), new Error('no'))).toBeDefined();
    expect(calls.settle(ws(a, 7, 'order.void'), new Error('no'))).toBeDefined();
    expect(calls.settle(ws(a, 7, 'order.void'), new Error('no'))).toBeUndefined();
    expect(settled).toEqual([{ n: 2 }, { n: 1 }]);
  });

  it('a call that reached its handler is forgotten; equal calls of one client are taken oldest first', () => {
    const { calls, settled } = deniedCalls();
    const client = {};
    calls.note(ws(client, null, 'order.void'), AUDITED, undefined);
    calls.note(ws(client, null, 'order.void'), AUDITED, undefined);
    calls.reached(ws(client, null, 'order.void'));
    expect(calls.settle(ws(client, null, 'order.void'), new Error('no'))).toBeDefined();
    expect(calls.settle(ws(client, null, 'order.void'), new Error('no'))).toBeUndefined();
    expect(settled).toEqual([{ n: 2 }]);
  });

  it('the pattern appended once more to the guards’ arguments (NestJS 11) does not keep a call from being found', () => {
    const { calls, settled } = deniedCalls();
    const client = {};
    calls.note(ws(client, 7, 'order.void', 'order.void', 'order.void'), AUDITED, undefined);
    expect(calls.settle(ws(client, 7, 'order.void', 'order.void'), new Error('no'))).toBeDefined();
    expect(settled).toEqual([{ n: 1 }]);
  });

  it('calls whose first argument is not an object share one queue, found by all their arguments', () => {
    const { calls, settled } = deniedCalls();
    calls.note(ws(7, undefined), AUDITED, undefined);
    calls.note(ws(8, undefined), AUDITED, undefined);
    expect(calls.settle(ws(8, undefined), new Error('no'))).toBeDefined();
    expect(settled).toEqual([{ n: 2 }]);
  });

  it('a client’s queue is bounded: past 256 calls never handled nor turned away, the oldest is forgotten, with one warning', () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const { calls, settled } = deniedCalls();
    const client = {};
    for (let id = 0; id < 258; id++) calls.note(ws(client, id, 'order.void'), AUDITED, undefined);
    expect(calls.settle(ws(client, 0, 'order.void'), new Error('no'))).toBeUndefined();
    expect(calls.settle(ws(client, 1, 'order.void'), new Error('no'))).toBeUndefined();
    expect(calls.settle(ws(client, 2, 'order.void'), new Error('no'))).toBeDefined();
    expect(settled).toEqual([{ n: 3 }]);
    expect(warn).toHaveBeenCalledTimes(1);
  });
});
