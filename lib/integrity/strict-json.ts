/**
 * Whether a stored JSON text is one the module wrote. The module writes its JSON (the
 * `changes`, `context` and `error` columns, export lines) with `JSON.stringify` of values
 * JSON can carry, so such a text never names a member twice in one object, and every
 * number in it is written exactly as `JSON.stringify` writes the number it reads as.
 *
 * A text that breaks either rule says something else to some reader than what the
 * module's `JSON.parse` reads, and so than what was hashed and signed: of a repeated
 * member, SQL's `JSON_EXTRACT` takes the first, `JSON.parse` the last; a number past
 * double precision (`9007199254740993`) or range (`1e400`) reads as another number
 * (`9007199254740992`, `Infinity`) in JavaScript than in SQL. Whitespace and member order
 * do not change the value and are not checked.
 *
 * One pass over the text, no value built. The text is expected to be JSON (what the
 * database or `JSON.parse` accepted); text that is not is reported when the pass notices.
 *
 * @returns why the text is not one the module wrote, or `undefined` when it is.
 */
export function strictJsonProblem(text: string): string | undefined {
  // One entry per open object (its member names so far) or array (`undefined`).
  const open: Array<Set<string> | undefined> = [];
  let expectName = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return 'a string is not closed';
      if (expectName) {
        const members = open[open.length - 1];
        if (members) {
          const raw = text.slice(i + 1, end - 1);
          const name = raw.includes('\\') ? (JSON.parse(text.slice(i, end)) as string) : raw;
          if (members.has(name)) return `the member ${JSON.stringify(name)} is given twice in one object`;
          members.add(name);
        }
        expectName = false;
      }
      i = end;
    } else if (c === MINUS || (c >= DIGIT_0 && c <= DIGIT_9)) {
      let end = i + 1;
      while (end < n && isNumberChar(text.charCodeAt(end))) end++;
      const token = text.slice(i, end);
      const written = JSON.stringify(Number(token));
      if (written !== token) {
        return written === 'null'
          ? `the number ${token} is outside what JSON numbers can hold as a double`
          : `the number ${token} reads as ${written} (it is not written as JSON.stringify writes a number)`;
      }
      i = end;
    } else {
      if (c === OPEN_OBJECT) {
        open.push(new Set());
        expectName = true;
      } else if (c === OPEN_ARRAY) {
        open.push(undefined);
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        open.pop();
        expectName = false;
      } else if (c === COMMA) {
        expectName = open[open.length - 1] !== undefined;
      }
      i++;
    }
  }
  return undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

/** Digits, `-`, `+`, `.`, `e`, `E`: what a JSON number is made of. */
function isNumberChar(c: number): boolean {
  return (c >= DIGIT_0 && c <= DIGIT_9) || c === MINUS || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

/** The index after the closing quote of the string opening at `start`; -1 when it is not closed. */
function stringEnd(text: string, start: number): number {
  let at = start + 1;
  for (;;) {
    const quote = text.indexOf('"', at);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    at = quote + 1;
  }
}
