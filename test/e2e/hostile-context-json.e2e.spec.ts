import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * Claims checked: "the context is sanitised/measured once in log()" (measureContext caches its
 * own output in a WeakMap). The JSON-safe form of a context is not always an object: a
 * Date, a Buffer, an object whose toJSON returns a primitive or null, or whose toJSON
 * throws ("[Unreadable]"). All of these pass validation (class-validator's IsObject and
 * plainlyValid both accept any non-array object) and used to be stored.
 */
describe.each(['sqlite', 'postgres'] as const)('log() with a context whose JSON form is not an object on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const cases: Array<[string, () => Record<string, unknown>]> = [
    ['whose toJSON throws', () => ({ toJSON: () => { throw new Error('boom'); } })],
    ['that is a Date', () => new Date(0) as unknown as Record<string, unknown>],
    ['whose toJSON returns a string', () => ({ toJSON: () => 'summary' })],
    ['whose toJSON returns null', () => ({ toJSON: () => null })],
  ];

  it.each(cases)('a context %s is stored, not a TypeError from log()', async (_name, make) => {
    const logged = t.audit.log({ action: 'order.exported', context: make() });
    // The defect this guards against: TypeError: Invalid value used as weak map key (audit-event.builder.ts measureContext: this.measured.set(safe, bytes)).
    await expect(logged).resolves.toEqual(expect.any(String));
    const rows = await t.rows();
    expect(rows.map((row) => row.action)).toEqual(['order.exported']);
  });
});

import { Controller, Get } from '@nestjs/common';
import { Audited } from '../../lib/index.js';

/** A value type whose JSON form is a string (as Decimal.js, Luxon's DateTime, BSON's ObjectId are). */
class Money {
  constructor(private readonly cents: number) {}
  toJSON(): string {
    return `${(this.cents / 100).toFixed(2)} EUR`;
  }
}

@Controller('context-json')
class ContextJsonController {
  // The handler's result is the event's context: an object whose JSON form is a string.
  @Audited('invoice.totalled', { context: ({ result }) => result as Record<string, unknown> })
  @Get('total')
  total(): Money {
    return new Money(1234);
  }
}

describe.each(['sqlite', 'postgres'] as const)('@Audited with a context whose JSON form is a string on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [ContextJsonController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('the request succeeds and its event is recorded', async () => {
    const response = await t.request('/context-json/total');
    // The defect this guards against: the event cannot be built (TypeError: Invalid value used as weak map key
    // in AuditEventBuilder.measureContext, reached through sanitiseContext); fail-closed
    // turns it into a 5xx and no audit_log row is written.
    expect(response.status).toBe(200);
    await expect(response.json()).resolves.toBe('12.34 EUR');
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.context])).toEqual([['invoice.totalled', '12.34 EUR']]);
  });
});
