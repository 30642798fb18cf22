import { describe, expect, it } from 'vitest';
import { ChangeSet, type CapturedChange } from '../../lib/capture/change-set.js';
import { clientIp, compileTrustProxy } from '../../lib/context/client-ip.js';
import { REDACTED, Redactor } from '../../lib/events/redaction.js';
import { toJsonSafe } from '../../lib/events/json-safe.js';
import { uuidv7, uuidv7Time } from '../../lib/events/uuid-v7.js';

const change = (operation: CapturedChange['operation'], fields: CapturedChange['fields'], id = '1'): CapturedChange => ({
  entity: 'Order',
  id,
  operation,
  fields,
  at: new Date(),
});

describe('ChangeSet (net changes per entity instance)', () => {
  it('merges updates: first from, last to; drops fields back where they started', () => {
    const set = new ChangeSet();
    set.record(change('update', { status: { from: 'new', to: 'paid' }, total: { from: 1, to: 2 } }));
    set.record(change('update', { status: { from: 'paid', to: 'shipped' }, total: { from: 2, to: 1 } }));
    expect(set.take(() => true).map((c) => c.fields)).toEqual([{ status: { from: 'new', to: 'shipped' } }]);
  });

  it('an update that changes nothing is no change', () => {
    const set = new ChangeSet();
    set.record(change('update', { status: { from: 'new', to: 'new' } }));
    expect(set.isEmpty).toBe(true);
  });

  it('insert then update is one insert with the final values; insert then delete is nothing', () => {
    const set = new ChangeSet();
    set.record(change('insert', { status: { from: null, to: 'new' } }));
    set.record(change('update', { status: { from: 'new', to: 'paid' } }));
    expect(set.take(() => true)).toMatchObject([{ operation: 'insert', fields: { status: { from: null, to: 'paid' } } }]);
    set.record(change('insert', { status: { from: null, to: 'new' } }, '2'));
    set.record(change('delete', { status: { from: 'new', to: null } }, '2'));
    expect(set.isEmpty).toBe(true);
  });

  it('update then delete keeps the value from before the unit of work', () => {
    const set = new ChangeSet();
    set.record(change('update', { status: { from: 'new', to: 'paid' } }));
    set.record(change('delete', { status: { from: 'paid', to: null }, total: { from: 5, to: null } }));
    expect(set.take(() => true)).toMatchObject([{ operation: 'delete', fields: { status: { from: 'new', to: null }, total: { from: 5, to: null } } }]);
  });

  it('delete then insert of one key is an update from the deleted values to the inserted ones', () => {
    const set = new ChangeSet();
    set.record(change('delete', { status: { from: 'paid', to: null }, total: { from: 5, to: null }, tags: { added: [], removed: ['a', 'b'] } }));
    set.record(change('insert', { status: { from: null, to: 'new' }, total: { from: null, to: 5 }, note: { from: null, to: 'x' }, tags: { added: ['a'], removed: [] } }));
    expect(set.take(() => true).map((c) => [c.operation, c.fields])).toEqual([
      ['update', { status: { from: 'paid', to: 'new' }, note: { from: null, to: 'x' }, tags: { added: [], removed: ['b'] } }],
    ]);
    set.record(change('delete', { status: { from: 'paid', to: null } }));
    set.record(change('insert', { status: { from: null, to: 'paid' } }));
    expect(set.isEmpty).toBe(true);
  });

  it('many-to-many links added then removed cancel out', () => {
    const set = new ChangeSet();
    set.record(change('update', { tags: { added: ['a', 'b'], removed: [] } }));
    set.record(change('update', { tags: { added: [], removed: ['a', 'c'] } }));
    expect(set.take(() => true).map((c) => c.fields)).toEqual([{ tags: { added: ['b'], removed: ['c'] } }]);
  });

  it('links reported before or after their insert are part of the insert', () => {
    for (const [first, second] of [
      [change('update', { tags: { added: ['a'], removed: [] } }), change('insert', { status: { from: null, to: 'new' } })],
      [change('insert', { status: { from: null, to: 'new' } }), change('update', { tags: { added: ['a'], removed: [] } })],
    ] as const) {
      const set = new ChangeSet();
      set.record(first);
      set.record(second);
      expect(set.take(() => true)).toMatchObject([{ operation: 'insert', fields: { status: { from: null, to: 'new' }, tags: { added: ['a'], removed: [] } } }]);
    }
  });

  it('links removed before or after a delete are part of the delete; links the unit added and removed cancel out', () => {
    const before = new ChangeSet();
    before.record(change('update', { tags: { added: ['b'], removed: [] } }));
    before.record(change('update', { tags: { added: [], removed: ['a', 'b'] } }));
    before.record(change('delete', { status: { from: 'new', to: null } }));
    expect(before.take(() => true)).toMatchObject([{ operation: 'delete', fields: { status: { from: 'new', to: null }, tags: { added: [], removed: ['a'] } } }]);
    const after = new ChangeSet();
    after.record(change('delete', { status: { from: 'new', to: null } }));
    after.record(change('update', { tags: { added: [], removed: ['a'] } }));
    expect(after.take(() => true)).toMatchObject([{ operation: 'delete', fields: { status: { from: 'new', to: null }, tags: { added: [], removed: ['a'] } } }]);
  });

  it('keeps unidentified (partial) changes apart and takes only what the predicate claims', () => {
    const set = new ChangeSet();
    set.record({ ...change('update', {}), id: null, partial: true });
    set.record(change('update', { status: { from: 'a', to: 'b' } }, '7'));
    expect(set.take((c) => c.id === '7')).toHaveLength(1);
    expect(set.size).toBe(1);
  });

  it('takes unidentified changes of one millisecond in the order they were made', () => {
    const set = new ChangeSet();
    const at = new Date();
    for (const operation of ['delete', 'update', 'insert'] as const) set.record({ entity: 'Order', id: null, operation, fields: {}, partial: true, at });
    expect(set.take(() => true).map((c) => c.operation)).toEqual(['delete', 'update', 'insert']);
    expect(set.isEmpty).toBe(true);
  });
});

describe('clientIp', () => {
  const socket = '10.0.0.5';
  it('ignores X-Forwarded-For unless the hop is trusted', () => {
    expect(clientIp(socket, '1.2.3.4', compileTrustProxy(false), 512)).toBe('10.0.0.5');
    expect(clientIp(socket, '1.2.3.4', compileTrustProxy(['10.0.0.0/8']), 512)).toBe('1.2.3.4');
    expect(clientIp(socket, '1.2.3.4', compileTrustProxy('uniquelocal'), 512)).toBe('1.2.3.4');
  });
  it('stops at the first untrusted hop and at anything that is not an address', () => {
    const trust = compileTrustProxy(['10.0.0.0/8']);
    expect(clientIp(socket, '1.2.3.4, 9.9.9.9, 10.0.0.9', trust, 512)).toBe('9.9.9.9');
    expect(clientIp(socket, 'evil, 10.0.0.9', trust, 512)).toBe('10.0.0.9');
  });
  it('reads IPv4-mapped IPv6 addresses as IPv4', () => {
    expect(clientIp('::ffff:127.0.0.1', undefined, compileTrustProxy(false), 512)).toBe('127.0.0.1');
  });
  it('rejects entries it cannot read', () => {
    expect(() => compileTrustProxy(['not-an-ip'])).toThrow(/"not-an-ip" is not an IP address/);
  });
});

describe('Redactor', () => {
  it('masks secret-looking keys at any depth, case and separators ignored, plus configured names', () => {
    const redactor = new Redactor(['dateOfBirth']);
    expect(
      redactor.safe({ user: { Password_Hash: 'x', api_key: 'y', name: 'ada', 'date-of-birth': '1815' }, list: [{ accessToken: 't' }] }),
    ).toEqual({ user: { Password_Hash: REDACTED, api_key: REDACTED, name: 'ada', 'date-of-birth': REDACTED }, list: [{ accessToken: REDACTED }] });
  });
  it('does not mistake a shared object for a cycle', () => {
    const shared = { a: 1 };
    expect(new Redactor().safe({ x: shared, y: shared })).toEqual({ x: { a: 1 }, y: { a: 1 } });
  });
});

describe('toJsonSafe', () => {
  it('turns dates, bigints, buffers and cycles into JSON data', () => {
    const cyclic: Record<string, unknown> = { n: 1n, at: new Date(0), bytes: Buffer.from('abc') };
    cyclic['self'] = cyclic;
    expect(toJsonSafe(cyclic)).toEqual({ n: '1', at: '1970-01-01T00:00:00.000Z', bytes: '[binary 3 bytes]', self: '[Circular]' });
  });
});

describe('uuidv7', () => {
  it('is a version 7 UUID carrying the time, strictly increasing within a millisecond', () => {
    const now = Date.now();
    const ids = Array.from({ length: 2000 }, () => uuidv7(now));
    expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(Math.abs(uuidv7Time(ids[0]!) - now)).toBeLessThanOrEqual(1);
  });
});
