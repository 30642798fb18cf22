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

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

function format(ms: number, sequence: number): string {
  if (poolOffset + 8 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const r = poolOffset;
  poolOffset += 8;
  const high = Math.floor(ms / 2 ** 32);
  return (
    HEX[(high >>> 8) & 0xff]! +
    HEX[high & 0xff]! +
    HEX[(ms >>> 24) & 0xff]! +
    HEX[(ms >>> 16) & 0xff]! +
    '-' +
    HEX[(ms >>> 8) & 0xff]! +
    HEX[ms & 0xff]! +
    '-' +
    HEX[0x70 | ((sequence >>> 8) & 0x0f)]! +
    HEX[sequence & 0xff]! +
    '-' +
    HEX[0x80 | (pool[r]! & 0x3f)]! +
    HEX[pool[r + 1]!]! +
    '-' +
    HEX[pool[r + 2]!]! +
    HEX[pool[r + 3]!]! +
    HEX[pool[r + 4]!]! +
    HEX[pool[r + 5]!]! +
    HEX[pool[r + 6]!]! +
    HEX[pool[r + 7]!]!
  );
}

/** The millisecond timestamp a UUID v7 carries. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
