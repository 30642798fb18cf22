import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bound,
  CIRCULAR_MARKER,
  DEPTH_MARKER,
  MAX_JSON_DEPTH,
  MAX_JSON_KEY,
  MAX_JSON_STRING,
  MAX_ID_LENGTH,
  storable,
  storedId,
  toJsonSafe,
  UNREADABLE_MARKER,
} from '../../lib/events/json-safe.js';
import { uuidv7, uuidv7Time } from '../../lib/events/uuid-v7.js';
import { UtcDateTimeParameter, UtcDateTransformer, utcDateTransformer } from '../../lib/storage/utc-date.transformer.js';
import type { Driver } from 'typeorm';

const MB = 1024 * 1024;

/** Every string and key in a JSON value. */
function texts(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const item of value) texts(item, out);
  else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      out.push(key);
      texts(item, out);
    }
  }
  return out;
}

/** A UTF-16 surrogate that is not part of a pair: it has no UTF-8 form. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** What PostgreSQL and MariaDB refuse: a NUL, or a lone surrogate. */
const unstorable = (text: string): boolean => text.includes('\u0000') || LONE_SURROGATE.test(text);

function depthOf(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (value && typeof value === 'object') return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

describe('storable()', () => {
  it('replaces NUL by the text \\u0000 and lone surrogates by U+FFFD', () => {
    expect(storable('a\u0000b\u0000')).toBe('a\\u0000b\\u0000');
    expect(storable('x\ud800y')).toBe('x\ufffdy');
    expect(storable('x\udc00y')).toBe('x\ufffdy');
    expect(storable('end\ud83d')).toBe('end\ufffd');
    expect(storable('\udc00start')).toBe('\ufffdstart');
    expect(storable('\udc00\ud800')).toBe('\ufffd\ufffd');
  });

  it('keeps valid surrogate pairs and returns clean strings as they are', () => {
    expect(storable('café 😀 𝄞')).toBe('café 😀 𝄞');
    expect(storable('\ud83d\ude00\ud800')).toBe('😀\ufffd');
    const big = 'a'.repeat(MB);
    expect(storable(big)).toBe(big);
  });

  it('cleans a 1 MB string of NULs and surrogates in one pass', () => {
    const hostile = '\u0000\ud800'.repeat(MB / 2);
    const clean = storable(hostile);
    expect(unstorable(clean)).toBe(false);
    expect(clean).toBe('\\u0000\ufffd'.repeat(MB / 2));
  });
});

describe('bound()', () => {
  it('cleans, then cuts to the limit without splitting a surrogate pair', () => {
    expect(bound('ab\u0000cd', 100)).toBe('ab\\u0000cd');
    expect(bound('ab\u0000cd', 4)).toBe('ab\\u');
    expect(bound('ab😀', 3)).toBe('ab');
    expect(bound('ab😀', 4)).toBe('ab😀');
    expect(bound('x'.repeat(MB), 1024)).toHaveLength(1024);
    expect(bound(undefined, 10)).toBeUndefined();
    expect(bound(null, 10)).toBeUndefined();
  });

  it('turns a value that is not a string (despite its type) into one', () => {
    expect(bound(42 as unknown as string, 10)).toBe('42');
  });
});

describe('storedId()', () => {
  it('keeps an id that fits as storable() makes it', () => {
    expect(storedId('doc\u00001')).toBe('doc\\u00001');
    expect(storedId('x'.repeat(MAX_ID_LENGTH))).toBe('x'.repeat(MAX_ID_LENGTH));
    expect(storedId('id\udc00')).toBe('id\ufffd');
  });

  it('cuts a longer id with a marker naming the cut and a digest of the whole, within the column', () => {
    const id = `long-${'i'.repeat(MB)}`;
    const stored = storedId(id);
    expect(stored.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
    const digest = createHash('sha256').update(id).digest('hex').slice(0, 16);
    expect(stored).toMatch(new RegExp(`^long-i+…\\[truncated \\d+ chars; sha256 ${digest}\\]$`));
    // Made storable, an id of 255 characters of NUL is longer than the column: cut the same way.
    expect(storedId('\u0000'.repeat(MAX_ID_LENGTH))).toMatch(/^(\\u0000)+[\\u0]*…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    expect(storedId('a'.repeat(190) + '😀'.repeat(100))).not.toMatch(/[\ud800-\udbff]…/);
  });

  it('keeps two long ids that share their first 255 characters apart', () => {
    const head = 'h'.repeat(MAX_ID_LENGTH);
    expect(storedId(`${head}-one`)).not.toBe(storedId(`${head}-two`));
  });

  it('gives the same for its own output and for the id made storable first (as the journal and a search hold it)', () => {
    for (const id of ['7', 'x'.repeat(256), `\u0000\ud800${'y'.repeat(2000)}`, '\u0000'.repeat(200)]) {
      expect(storedId(storedId(id))).toBe(storedId(id));
      expect(storedId(storable(id))).toBe(storedId(id));
      expect(unstorable(storedId(id))).toBe(false);
    }
  });
});

describe('toJsonSafe()', () => {
  it('makes NUL and lone surrogates storable in values and keys, at any depth', () => {
    const safe = toJsonSafe({
      'key\u0000': 'value\u0000',
      ['lone\ud800']: ['x\udc00', { deep: { 'k\u0000\ud800': 'v\ud800\u0000' } }],
      emoji: '😀',
    });
    expect(safe).toEqual({
      'key\\u0000': 'value\\u0000',
      'lone\ufffd': ['x\ufffd', { deep: { 'k\\u0000\ufffd': 'v\ufffd\\u0000' } }],
      emoji: '😀',
    });
    expect(texts(safe).filter(unstorable)).toEqual([]);
  });

  it('bounds long strings with a marker that names the cut and the whole string', () => {
    const long = 'é'.repeat(MB);
    const safe = toJsonSafe({ long, other: `${'b'.repeat(MB)}\u0000` }) as Record<string, string>;
    expect(safe['long']!.length).toBeLessThanOrEqual(MAX_JSON_STRING);
    expect(safe['long']).toMatch(/^é+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    const cut = Number(/truncated (\d+) chars/.exec(safe['long']!)![1]);
    expect(safe['long']!.indexOf('…')).toBe(MB - cut);
    expect(safe['long']).toContain(createHash('sha256').update(long).digest('hex').slice(0, 16));
    // Strings that differ only after the cut still differ.
    expect(safe['other']!.slice(-30)).not.toBe(safe['long']!.slice(-30));
    expect(JSON.stringify(safe).length).toBeLessThan(3 * MAX_JSON_STRING);
  });

  it('does not split a surrogate pair when it cuts', () => {
    const safe = toJsonSafe('😀'.repeat(MB)) as string;
    expect(unstorable(safe)).toBe(false);
    expect(safe.length).toBeLessThanOrEqual(MAX_JSON_STRING);
  });

  it('bounds long keys', () => {
    const safe = toJsonSafe({ ['k'.repeat(MB)]: 1, ['k'.repeat(MB - 1)]: 2 }) as Record<string, number>;
    const keys = Object.keys(safe);
    expect(keys).toHaveLength(2);
    for (const key of keys) expect(key.length).toBeLessThanOrEqual(MAX_JSON_KEY);
  });

  it('replaces what is nested deeper than the bound, even 10,000 levels deep', () => {
    let object: Record<string, unknown> = { leaf: true };
    let array: unknown[] = ['leaf'];
    for (let level = 0; level < 10_000; level++) {
      object = { next: object, text: '\u0000' };
      array = [array];
    }
    const safe = toJsonSafe({ object, array });
    expect(depthOf(safe)).toBeLessThanOrEqual(MAX_JSON_DEPTH + 1);
    const json = JSON.stringify(safe);
    expect(json).toContain(JSON.stringify(DEPTH_MARKER));
    expect(texts(safe).filter(unstorable)).toEqual([]);
    // A value with room to spare is kept whole.
    expect(toJsonSafe({ a: { b: { c: [1, { d: 'e' }] } } })).toEqual({ a: { b: { c: [1, { d: 'e' }] } } });
  });

  it('keeps a whole document within the bound: a value nested inside another keeps that many levels fewer', () => {
    const nested = (levels: number, leaf: unknown): unknown => {
      let value: unknown = leaf;
      for (let level = 0; level < levels; level++) value = { a: value };
      return value;
    };
    expect(toJsonSafe(nested(100, 1))).toEqual(nested(MAX_JSON_DEPTH, DEPTH_MARKER));
    expect(toJsonSafe(nested(MAX_JSON_DEPTH, 1))).toEqual(nested(MAX_JSON_DEPTH, 1));
    // Five levels down (a field's value in a journal entry): five fewer of its own.
    const inner = toJsonSafe(nested(100, 1), 5);
    expect(inner).toEqual(nested(MAX_JSON_DEPTH - 5, DEPTH_MARKER));
    expect(depthOf({ changes: [{ fields: { body: { to: inner } } }] })).toBeLessThanOrEqual(MAX_JSON_DEPTH);
    // Made safe again at the same nesting, or at less, it is unchanged.
    expect(toJsonSafe(inner, 5)).toEqual(inner);
    expect(toJsonSafe(inner)).toEqual(inner);
  });

  it('cuts cycles but keeps an object that is only shared', () => {
    const shared = { name: 'shared' };
    const cyclic: Record<string, unknown> = { shared, again: shared, list: [shared] };
    cyclic['self'] = cyclic;
    (cyclic['list'] as unknown[]).push(cyclic);
    expect(toJsonSafe(cyclic)).toEqual({
      shared: { name: 'shared' },
      again: { name: 'shared' },
      list: [{ name: 'shared' }, CIRCULAR_MARKER],
      self: CIRCULAR_MARKER,
    });
  });

  it('never throws: getters and toJSON that throw become a marker', () => {
    const hostile = {
      get boom(): string {
        throw new Error('getter');
      },
    };
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    expect(toJsonSafe({ hostile, json: { toJSON: () => { throw new Error('toJSON'); } }, revoked: revoked.proxy, fine: 1 })).toEqual({
      hostile: UNREADABLE_MARKER,
      json: UNREADABLE_MARKER,
      revoked: UNREADABLE_MARKER,
      fine: 1,
    });
  });

  it('keeps a "__proto__" key as data', () => {
    const safe = toJsonSafe(JSON.parse('{"__proto__": {"admin": true}, "x": 1}')) as object;
    expect(Object.getPrototypeOf(safe)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(safe))).toEqual(JSON.parse('{"__proto__": {"admin": true}, "x": 1}'));
  });

  it('keeps the existing conversions and changes nothing when applied twice', () => {
    const input = {
      date: new Date('2026-01-02T03:04:05.678Z'),
      big: 12n,
      nan: Number.NaN,
      none: undefined,
      fn: () => 1,
      buffer: Buffer.from('abc'),
      map: new Map([['k', 'v\u0000']]),
      set: new Set([1, 2]),
      boxed: Object('boxed\u0000') as string,
      long: 'z'.repeat(MB),
      deep: JSON.parse('['.repeat(100) + ']'.repeat(100)) as unknown,
    };
    const once = toJsonSafe(input) as Record<string, unknown>;
    expect(once).toMatchObject({
      date: '2026-01-02T03:04:05.678Z',
      big: '12',
      nan: 'NaN',
      none: null,
      buffer: '[binary 3 bytes]',
      map: { k: 'v\\u0000' },
      set: [1, 2],
      boxed: 'boxed\\u0000',
    });
    expect('fn' in once).toBe(false);
    expect(toJsonSafe(once)).toEqual(once);
  });

  it('returns plain scalars as they are', () => {
    const text = 'plain';
    expect(toJsonSafe(text)).toBe(text);
    expect(toJsonSafe(3)).toBe(3);
    expect(toJsonSafe(true)).toBe(true);
    expect(toJsonSafe(null)).toBeNull();
  });
});

describe('uuidv7() with an explicit time', () => {
  it('carries that time even when it is older than the last id made', () => {
    const now = Date.now();
    uuidv7();
    uuidv7(now + 5);
    const old = now - 3_600_000;
    expect(uuidv7Time(uuidv7(old))).toBe(old);
    expect(uuidv7Time(uuidv7(now))).toBe(now);
    expect(uuidv7Time(uuidv7(0))).toBe(0);
  });

  it('keeps ids given the same millisecond one after another increasing', () => {
    const at = Date.now() - 1000;
    const ids = Array.from({ length: 2000 }, () => uuidv7(at));
    expect(ids.every((id) => uuidv7Time(id) === at)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const increasing = ids.slice(0, 100);
    expect([...increasing].sort()).toEqual(increasing);
  });

  it('does not move the clock ids: a future time leaves the next plain id at the clock', () => {
    uuidv7(Date.now() + 86_400_000);
    const before = Date.now();
    const id = uuidv7();
    expect(uuidv7Time(id)).toBeGreaterThanOrEqual(before);
    expect(uuidv7Time(id)).toBeLessThan(before + 1000);
  });

  it('keeps plain ids strictly increasing', () => {
    const ids = Array.from({ length: 10_000 }, () => uuidv7());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('ignores a time that is not a number of milliseconds', () => {
    const before = Date.now();
    expect(uuidv7Time(uuidv7(Number.NaN))).toBeGreaterThanOrEqual(before);
  });
});

describe('UTC date columns', () => {
  const originalTz = process.env['TZ'];
  afterEach(() => {
    if (originalTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = originalTz;
  });
  const driver = (options: Record<string, unknown>) => ({ options }) as unknown as Driver;
  const at = new Date('2026-03-08T10:30:00.123Z');

  it('sends PostgreSQL and MySQL/MariaDB the UTC wall-clock text, whatever TZ is', () => {
    for (const zone of ['Asia/Tokyo', 'America/Los_Angeles', 'UTC']) {
      process.env['TZ'] = zone;
      for (const type of ['postgres', 'mariadb', 'mysql']) {
        const sent = utcDateTransformer(driver({ type })).to(at) as UtcDateTimeParameter;
        expect(sent).toBeInstanceOf(UtcDateTimeParameter);
        expect(sent.toPostgres()).toBe('2026-03-08 10:30:00.123');
        expect(sent.toSqlString()).toBe("'2026-03-08 10:30:00.123'");
        expect(JSON.stringify(sent)).toBe('"2026-03-08 10:30:00.123"');
      }
    }
  });

  it('leaves SQLite its own UTC handling', () => {
    const sqlite = utcDateTransformer(driver({ type: 'better-sqlite3' }));
    expect(sqlite.to(at)).toBe(at);
    expect(sqlite.from(at)).toBe(at);
  });

  it('reads back the instant from a Date the driver built as local time, whatever TZ is', () => {
    for (const zone of ['Asia/Tokyo', 'America/Los_Angeles', 'Europe/London', 'UTC']) {
      process.env['TZ'] = zone;
      // What node-postgres and mysql2 (timezone: 'local') build from "2026-03-08 10:30:00.123".
      const local = new Date(2026, 2, 8, 10, 30, 0, 123);
      for (const type of ['postgres', 'mariadb']) {
        expect((utcDateTransformer(driver({ type })).from(local) as Date).toISOString()).toBe(at.toISOString());
      }
    }
  });

  it("follows mysql2's timezone option, including when it is given in extra", () => {
    const stored = '2026-03-08T10:30:00.123';
    const read = (options: Record<string, unknown>, built: Date) =>
      (utcDateTransformer(driver({ type: 'mariadb', ...options })).from(built) as Date).toISOString();
    expect(read({ timezone: 'Z' }, new Date(`${stored}Z`))).toBe(at.toISOString());
    expect(read({ timezone: '+09:00' }, new Date(`${stored}+09:00`))).toBe(at.toISOString());
    expect(read({ timezone: '-05:30' }, new Date(`${stored}-05:30`))).toBe(at.toISOString());
    expect(read({ timezone: 'local', extra: { timezone: '+09:00' } }, new Date(`${stored}+09:00`))).toBe(at.toISOString());
    process.env['TZ'] = 'Asia/Tokyo';
    expect(read({ timezone: '+09:00', dateStrings: true }, new Date(stored))).toBe(at.toISOString());
  });

  it('passes null and values it cannot read through', () => {
    const transformer = new UtcDateTransformer('text', { clock: 'local' });
    expect(transformer.to(null)).toBeNull();
    expect(transformer.from(undefined)).toBeUndefined();
    expect(transformer.to('not a date')).toBe('not a date');
    expect(transformer.from(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
  });
});
