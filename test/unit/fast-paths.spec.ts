import { describe, expect, it } from 'vitest';
import { toJsonSafe } from '../../lib/events/json-safe.js';
import { REDACTED, Redactor } from '../../lib/events/redaction.js';
import { plainlyValid, ruleProblems } from '../../lib/service/audit-log.input.js';
import { arrayLiteral, arrayText } from '../../lib/storage/write-statements.js';

describe('arrayLiteral (PostgreSQL array parameters built by the writer)', () => {
  const samples: unknown[][] = [
    [],
    [''],
    ['a', null, 'b'],
    [undefined, 'NULL', 'null'],
    ['say "hi"', 'back\\slash', '\\"', '{braces}', 'a,b', ' spaced ', '\n\t\r'],
    ['{"amountCents":1000,"currency":"EUR","note":"a \\"quoted\\" word"}'],
    ['😀 émoji', '\\u0000', 'x'.repeat(70_000)],
  ];

  it('writes the literal node-postgres writes for arrays of strings and nulls', () => {
    for (const values of samples) expect(arrayLiteral(values)).toBe(prepareValue(values));
  });

  it('joins columns of plain strings, of nulls and of a mix the same way', () => {
    const columns: Array<Array<string | null>> = [
      [],
      ['a', 'b', ''],
      [null, null, null],
      [null],
      ['a', null],
      ['say "hi"', 'plain'],
      ['back\\slash', null, 'x'],
      Array.from({ length: 2000 }, (_, i) => `user${i}@example.com`),
      Array.from({ length: 2000 }, (_, i) => (i % 3 ? `{"n":${i}}` : null)),
    ];
    for (const values of columns) expect(arrayText(values)).toBe(prepareValue(values));
  });

  it('leaves arrays holding anything else to node-postgres', () => {
    const values = ['a', 1, null];
    expect(arrayLiteral(values)).toBe(values);
    const dates = [new Date(0)];
    expect(arrayLiteral(dates)).toBe(dates);
  });
});

/** node-postgres's own conversion of an array parameter (what its query path sends). */
const utils = 'pg/lib/utils.js';
const { prepareValue } = ((await import(utils)) as { default: unknown }).default as { prepareValue(value: unknown): string };

describe('the quick check of log() input agrees with the validation rules', () => {
  const valid: Array<Record<string, unknown>> = [
    { action: 'order.updated' },
    { action: 'order.updated', outcome: 'failure', reason: 'r'.repeat(1024) },
    { action: 'order.updated', actor: { type: 'user', id: 7, display: 'Ann' }, target: { type: 'order', id: '1' }, context: {} },
    { action: 'order.updated', actor: { type: 'user', id: 'u'.repeat(255) }, context: { nested: { a: [1, 2] } } },
    { action: 'order.updated', reason: undefined, context: undefined },
    // Long values an attacker may choose are accepted (cut when stored); they were refused past 255 / 1,024 characters.
    { action: 'order.updated', actor: { type: 'user', id: 'u'.repeat(256) } },
    { action: 'order.updated', reason: 'r'.repeat(1025) },
    { action: 'order.updated', actor: { type: 'user', id: 'i'.repeat(1024 * 1024), display: 'd'.repeat(1024 * 1024) }, target: { type: 'order', id: 't'.repeat(2000) }, reason: 'r'.repeat(1024 * 1024) },
    { action: 'order.updated', actor: { type: 'user', id: 'x'.repeat(254) + '😀' } },
  ];
  const invalid: Array<Record<string, unknown>> = [
    {},
    { action: 'Order.Updated' },
    { action: 'order' },
    { action: `order.${'a'.repeat(200)}` },
    { action: 'order.updated', outcome: 'maybe' },
    { action: 'order.updated', extra: 1 },
    { action: 'order.updated', actor: { type: '' } },
    { action: 'order.updated', actor: { type: 'user', role: 'admin' } },
    { action: 'order.updated', actor: { type: 'u'.repeat(65) } },
    { action: 'order.updated', actor: { type: 'user', display: 5 } },
    { action: 'order.updated', actor: { type: 'user', id: true } },
    { action: 'order.updated', actor: 'ann' },
    { action: 'order.updated', target: { type: 'order', id: '' } },
    { action: 'order.updated', target: { type: 'o'.repeat(129), id: '1' } },
    { action: 'order.updated', context: [1] },
    { action: 'order.updated', context: 'text' },
    { action: 'order.updated', reason: 5 },
    { action: 'order.updated', changes: 'no' },
  ];

  it('accepts only what the rules accept', () => {
    for (const input of valid) {
      expect(ruleProblems(input), JSON.stringify(input)).toEqual([]);
      expect(plainlyValid(input), JSON.stringify(input)).toBe(true);
    }
    for (const input of invalid) {
      expect(plainlyValid(input), JSON.stringify(input)).toBe(false);
      expect(ruleProblems(input).length, JSON.stringify(input)).toBeGreaterThan(0);
    }
  });

  it('leaves valid input of rarer shapes to the rules, which accept it', () => {
    const rarer: Array<Record<string, unknown>> = [
      { action: 'order.updated', reason: null },
      { action: 'order.updated', changes: [{ entity: 'Order', id: '1', operation: 'update', fields: { a: { from: 1, to: 2 } } }] },
      // 64 characters as the rules count them, 65 UTF-16 units as the quick check does.
      { action: 'order.updated', actor: { type: 'x'.repeat(63) + '😀' } },
    ];
    for (const input of rarer) {
      expect(plainlyValid(input)).toBe(false);
      expect(ruleProblems(input)).toEqual([]);
    }
  });
});

describe('Redactor.safe (JSON-safe and redacted in one walk)', () => {
  it('gives what redacting the JSON-safe value gives', () => {
    const redactor = new Redactor(['internalNote']);
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic['self'] = cyclic;
    const samples: unknown[] = [
      null,
      'plain',
      42,
      { password: 'hunter2', nested: { apiKey: 'k', list: [{ token: null }, { ok: 1 }] }, fine: 'yes' },
      { internal_note: 'x', Authorization: 'Bearer y', when: new Date(0), big: 10n, fn: () => 1, sym: Symbol('s') },
      { secretFn: () => 1, secretUndefined: undefined, map: new Map([['pin', 1234]]), set: new Set(['a']) },
      { 'a\u0000b': 'c\u0000d', lone: '\ud800', buffer: Buffer.from('abc') },
      [{ cvv: 123 }, [{ ssn: '1' }]],
      cyclic,
      { toJSON: () => ({ password: 'p', visible: true }) },
    ];
    for (const value of samples) expect(redactor.safe(value)).toEqual(redactInTwoPasses(redactor, toJsonSafe(value)));
  });
});

/** What `safe()` replaced: a second deep copy of a JSON-safe value with secret keys masked. */
function redactInTwoPasses(redactor: Redactor, value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redactInTwoPasses(redactor, item));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = redactor.isSecret(key) ? REDACTED : redactInTwoPasses(redactor, item);
  return out;
}
