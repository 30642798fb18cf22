import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainlyValid, ruleProblems } from '../../lib/service/audit-log.input.js';
import { InvalidAuditEventError } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * Claims checked: plainlyValid(): "it never accepts input the rules reject". The rules validate
 * a copy made with Object.assign (own enumerable properties only); plainlyValid lists keys
 * with for…in (enumerable only) but reads values with plain property access, which also
 * sees getters on the prototype (class accessors) and non-enumerable own properties.
 */
class SessionActor {
  readonly #user: { id: string; name: string };
  constructor(user: { id: string; name: string }) {
    this.#user = user;
  }
  get type(): string {
    return 'user';
  }
  get id(): string {
    return this.#user.id;
  }
}

const hidden = (): Record<string, unknown> => {
  const actor: Record<string, unknown> = {};
  Object.defineProperty(actor, 'type', { value: 'user', enumerable: false });
  return actor;
};

describe('plainlyValid versus the rules', () => {
  const inputs: Array<[string, () => Record<string, unknown>]> = [
    ['an actor that is a class instance with accessors', () => ({ action: 'order.updated', actor: new SessionActor({ id: '7', name: 'Ann' }) })],
    ['an actor whose type is a non-enumerable own property', () => ({ action: 'order.updated', actor: hidden() })],
  ];

  it.each(inputs)('%s: the rules reject it, so must the quick check', (_name, make) => {
    const input = make();
    expect(ruleProblems(input).length).toBeGreaterThan(0); // the rules: "actor.type must be a string ..."
    expect(plainlyValid(input)).toBe(false); // it was true: an actor the rules reject passed the quick check
  });
});

describe('log() with an actor the rules reject (sqlite)', () => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('throws InvalidAuditEventError as before, and writes nothing', async () => {
    const actor = new SessionActor({ id: '7', name: 'Ann' }) as unknown as { type: string };
    // Before the change: InvalidAuditEventError (actor.type must be a string). Now: accepted and stored.
    await expect(t.audit.log({ action: 'order.updated', actor })).rejects.toBeInstanceOf(InvalidAuditEventError);
    expect(await t.rows()).toEqual([]);
  });
});
