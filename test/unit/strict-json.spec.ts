import { describe, expect, it } from 'vitest';
import { strictJsonProblem } from '../../lib/integrity/strict-json.js';

describe('strictJsonProblem', () => {
  it('accepts what JSON.stringify writes, also reformatted or with members in another order', () => {
    const values: unknown[] = [
      { amount: 100, account: 9007199254740991, rate: 0.1, tiny: 5e-324, big: 1e21, negative: -2.5, zero: 0 },
      [{ a: [1, { a: 2 }], b: { a: 3 } }, 'text with "quotes", \\ and \u2028', null, true, false],
      { 'a\\"b': 1, 'a"b': 2, '\u00e9': 3, e: 4 },
      {},
      [],
      'plain',
      12,
    ];
    for (const value of values) {
      const text = JSON.stringify(value);
      expect(strictJsonProblem(text)).toBeUndefined();
      expect(strictJsonProblem(JSON.stringify(value, null, 2))).toBeUndefined();
    }
    expect(strictJsonProblem('{"b":1, "a":2}')).toBeUndefined();
    // The same name in two objects, or as a value, is not a repetition.
    expect(strictJsonProblem('{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":"a"}')).toBeUndefined();
  });

  it('refuses a member given twice in one object, also when written with escapes', () => {
    expect(strictJsonProblem('{"amount":999999,"amount":100}')).toMatch(/"amount" is given twice/);
    expect(strictJsonProblem('{"x":{"a":1,"b":2,"a":3}}')).toMatch(/"a" is given twice/);
    expect(strictJsonProblem('{"a":1,"\\u0061":2}')).toMatch(/"a" is given twice/);
    expect(strictJsonProblem('[{"a":1},{"a":1,"a":1}]')).toMatch(/"a" is given twice/);
  });

  it('refuses a number not written as JSON.stringify writes the number it reads as', () => {
    expect(strictJsonProblem('{"account":9007199254740993}')).toMatch(/9007199254740993 reads as 9007199254740992/);
    expect(strictJsonProblem('{"amount":1e400}')).toMatch(/1e400 is outside/);
    expect(strictJsonProblem('[-1e400]')).toMatch(/-1e400 is outside/);
    expect(strictJsonProblem('[1.0]')).toMatch(/1\.0 reads as 1/);
    expect(strictJsonProblem('[1E2]')).toMatch(/1E2 reads as 100/);
    expect(strictJsonProblem('[-0]')).toMatch(/-0 reads as 0/);
    expect(strictJsonProblem('[0.10000000000000001]')).toMatch(/reads as 0.1/);
  });

  it('is not fooled by digits or braces inside strings', () => {
    expect(strictJsonProblem('{"a":"9007199254740993 {\\"a\\":1,\\"a\\":2}","b":"\\\\"}')).toBeUndefined();
    expect(strictJsonProblem('{"a":"x\\\\","a":1}')).toMatch(/"a" is given twice/);
  });

  it('reports a string that is not closed', () => {
    expect(strictJsonProblem('{"a":"x')).toMatch(/not closed/);
  });
});
