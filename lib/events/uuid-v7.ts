import { randomFillSync } from 'node:crypto';

const pool = new Uint8Array(4096);
let poolOffset = pool.length;
/** The clock's last millisecond and counter (ids without a given time). */
let lastMs = -1;
let sequence = 0;
/** The last given millisecond and its counter. */
let givenMs = -1;
let givenSequence = 0;

function randomBytes(count: number): Uint8Array {
  if (poolOffset + count > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + count);
  poolOffset += count;
  return bytes;
}

/**
 * A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter,
 * then 62 random bits.
 *
 * Without `now`, the time is the clock's, and the counter keeps ids from one process
 * strictly increasing (within a millisecond, and when the clock steps back). With `now`,
 * the id carries exactly that millisecond, also when it is older than the last id made:
 * an event's id tells its own time. Ids given the same millisecond one after another
 * still increase; otherwise ids of one millisecond are not ordered.
 *
 * @param now Unix milliseconds the id carries (an event's time), rounded down; NaN or a
 * value outside 48 bits is ignored.
 */
export function uuidv7(now?: number): string {
  if (now !== undefined && now >= 0 && now < 2 ** 48) {
    // A given time is the id's, whatever ids were made before; it does not move the clock's ids.
    now = Math.floor(now);
    if (now === givenMs && givenSequence < 0xfff) {
      givenSequence++;
    } else {
      givenMs = now;
      givenSequence = freshSequence();
    }
    return format(givenMs, givenSequence);
  }
  const clock = Date.now();
  if (clock > lastMs) {
    lastMs = clock;
    sequence = freshSequence();
  } else if (++sequence > 0xfff) {
    lastMs++;
    sequence = freshSequence();
  }
  return format(lastMs, sequence);
}

/** A random counter start, leaving room to count up within the millisecond. */
function freshSequence(): number {
  return randomBytes(2).reduce((a, b) => (a << 8) | b, 0) & 0x1ff;
}

/** ASCII codes of the hex digits of each byte value: high digit, low digit. */
const HEX_HIGH = new Uint8Array(256);
const HEX_LOW = new Uint8Array(256);
for (let byte = 0; byte < 256; byte++) {
  HEX_HIGH[byte] = '0123456789abcdef'.charCodeAt(byte >>> 4);
  HEX_LOW[byte] = '0123456789abcdef'.charCodeAt(byte & 0x0f);
}
/** The id's 36 characters are written here, then read as one string (no string per part). */
const text = Buffer.alloc(36, '-');
/** Byte offsets of the 16 bytes' digits in the text (the dashes stay where they are). */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

function put(index: number, byte: number): void {
  const at = AT[index]!;
  text[at] = HEX_HIGH[byte]!;
  text[at + 1] = HEX_LOW[byte]!;
}

function format(ms: number, sequence: number): string {
  if (poolOffset + 8 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const r = poolOffset;
  poolOffset += 8;
  const high = Math.floor(ms / 2 ** 32);
  put(0, (high >>> 8) & 0xff);
  put(1, high & 0xff);
  put(2, (ms >>> 24) & 0xff);
  put(3, (ms >>> 16) & 0xff);
  put(4, (ms >>> 8) & 0xff);
  put(5, ms & 0xff);
  put(6, 0x70 | ((sequence >>> 8) & 0x0f));
  put(7, sequence & 0xff);
  put(8, 0x80 | (pool[r]! & 0x3f));
  for (let index = 1; index < 8; index++) put(8 + index, pool[r + index]!);
  return text.toString('latin1', 0, 36);
}

/** The millisecond timestamp a UUID v7 carries. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
