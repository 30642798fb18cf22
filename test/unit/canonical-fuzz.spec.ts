// Hostile tests of the event's canonical JSON written member by member: on random hostile
// rows (lone surrogates, U+2028, NUL, -0, 1e21, NaN, bigint, invalid dates, Buffers, toJSON,
// boxed primitives, undefined members), the same text or the same error as the whole
// object's canonicalisation; and the one-call leaf hash equal to SHA-256(0x00 || utf8).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalEventJson, wholeEventJson, type CanonicalEventInput } from '../../lib/integrity/canonical-json.js';
import { leafHash, leafHashOfText } from '../../lib/integrity/merkle.js';

const FIELDS = ['action','outcome','kind','actorType','actorId','actorDisplay','source','ip','userAgent','method','route','path','requestId','targetType','targetId','reason'] as const;
const JSONF = ['changes','context','error'] as const;

let seed = 12345;
const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
const CHARS = ['a','"','\\','\u0000','\u001f','\u007f','\u2028','\u2029','\ud800','\udc00','\ud83d\ude00','\ufeff','\u00e9','\uffff','/','<','\n','é','\ud83d','\ude00'];
const str = () => { let s = ''; const n = rnd(6); for (let i = 0; i < n; i++) s += CHARS[rnd(CHARS.length)]; return s; };
const NUMS = [0, -0, 1e21, 1e-7, 5e-324, Number.MAX_VALUE, -1.5, 0.1 + 0.2, 2 ** 53 + 1, NaN, Infinity];
class WithToJson { constructor(private v: unknown) {} toJSON() { return this.v; } }
function val(depth: number): unknown {
  switch (rnd(depth > 3 ? 6 : 13)) {
    case 0: return null;
    case 1: return undefined;
    case 2: return str();
    case 3: return NUMS[rnd(NUMS.length)];
    case 4: return rnd(2) === 0;
    case 5: return new Date(rnd(3) === 0 ? NaN : 1_700_000_000_000 + rnd(1e6));
    case 6: { const a: unknown[] = []; const n = rnd(4); for (let i = 0; i < n; i++) a.push(val(depth + 1)); return a; }
    case 7: case 8: { const o: Record<string, unknown> = {}; const n = rnd(4); for (let i = 0; i < n; i++) o[str()] = val(depth + 1); return o; }
    case 9: return Buffer.from(str());
    case 10: return new WithToJson(val(depth + 1));
    case 11: return [() => 1, Symbol('s'), new String(str()), new Number(-0), new Boolean(false), 10n][rnd(6)];
    default: return { toJSON: 'not a function', x: val(depth + 1) };
  }
}

function outcome(f: () => string): { ok: string } | { err: string } {
  try { return { ok: f() }; } catch (e) { return { err: `${(e as Error).constructor.name}: ${(e as Error).message}` }; }
}

describe('canonical JSON of an event, member by member against the whole object (fuzzed)', () => {
  it('agrees (value or error) on 30000 random hostile rows', () => {
    const diffs: unknown[] = []; let okCount = 0;
    for (let i = 0; i < 30000 && diffs.length < 5; i++) {
      const row: Record<string, unknown> = { id: 'x' + i, occurredAt: rnd(3) === 0 ? '2026-01-02 03:04:05.678' : new Date(1_700_000_000_000 + i) };
      for (const f of FIELDS) row[f] = rnd(4) === 0 ? val(2) : rnd(3) ? str() : null;
      for (const f of JSONF) row[f] = val(0);
      const a = outcome(() => canonicalEventJson(row as CanonicalEventInput));
      const b = outcome(() => wholeEventJson(row as CanonicalEventInput));
      if ("ok" in a) okCount++;
      if (JSON.stringify(a) !== JSON.stringify(b)) diffs.push({ i, a, b });
    }
    expect(okCount).toBeGreaterThan(3000); expect(diffs).toEqual([]);
  });

  it('leafHashOfText equals leafHash(utf8) on hostile strings', () => {
    const bad: string[] = [];
    for (let i = 0; i < 20000; i++) {
      let s = ''; const n = rnd(8); for (let j = 0; j < n; j++) s += CHARS[rnd(CHARS.length)];
      const old = createHash('sha256').update(Buffer.from([0])).update(Buffer.from(s, 'utf8')).digest();
      if (!leafHashOfText(s).equals(old) || !leafHash(Buffer.from(s, 'utf8')).equals(old)) bad.push(JSON.stringify(s));
    }
    for (const s of ['\udc00', '\ud800', '\u0000', '\u0000\udc00', 'x'.repeat(5_000_000) + '\ud800']) {
      if (!leafHashOfText(s).equals(leafHash(Buffer.from(s, 'utf8')))) bad.push(s.slice(0, 10));
    }
    expect(bad).toEqual([]);
  });
});
