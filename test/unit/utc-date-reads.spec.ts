import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { pgTimestampAsUtc } from '../../lib/integrations/driver-utc-date-reads.js';

describe('pgTimestampAsUtc', () => {
  const originalTz = process.env['TZ'];
  afterEach(() => {
    if (originalTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = originalTz;
  });
  /** node-postgres' own parser, which reads the text as local time. */
  const local = pg.types.getTypeParser(1114, 'text') as (text: string) => unknown;
  const read = (text: string): string => (pgTimestampAsUtc(text, local) as Date).toISOString();

  it('reads the text PostgreSQL sends as UTC, whatever the process zone, including an hour the zone skips', () => {
    for (const zone of ['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'UTC']) {
      process.env['TZ'] = zone;
      expect(read('2026-03-29 02:30:00.123')).toBe('2026-03-29T02:30:00.123Z');
      expect(read('2026-03-08 02:30:00')).toBe('2026-03-08T02:30:00.000Z');
      expect(read('2026-10-25 00:30:00.1')).toBe('2026-10-25T00:30:00.100Z');
      expect(read('2026-10-25 01:30:00.45')).toBe('2026-10-25T01:30:00.450Z');
      expect(read('2026-10-25 01:30:00.456789')).toBe('2026-10-25T01:30:00.456Z');
      expect(read('0042-01-02 03:04:05.006')).toBe('0042-01-02T03:04:05.006Z');
      expect(read('12026-01-02 03:04:05')).toBe('+012026-01-02T03:04:05.000Z');
      expect(read('0044-03-15 12:00:00 BC')).toBe('-000043-03-15T12:00:00.000Z');
    }
    expect(pgTimestampAsUtc('infinity', local)).toBe(Number.POSITIVE_INFINITY);
  });
});
