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

describe('pgTimestampAsUtc, DateStyle other than ISO', () => {
  const local = pg.types.getTypeParser(1114, 'text') as (text: string) => unknown;
  const read = (text: string, dayFirst?: boolean): string => (pgTimestampAsUtc(text, local, dayFirst) as Date).toISOString();

  it('reads the SQL style in the order of the session (day first with DMY)', () => {
    expect(read('06/12/2026 10:11:12.345', true)).toBe('2026-12-06T10:11:12.345Z');
    expect(read('12/06/2026 10:11:12.345', false)).toBe('2026-12-06T10:11:12.345Z');
    expect(read('25/12/2026 23:59:59', true)).toBe('2026-12-25T23:59:59.000Z');
    expect(read('02/29/2028 00:00:00.5', false)).toBe('2028-02-29T00:00:00.500Z');
    expect(read('01/02/0042 03:04:05.006', true)).toBe('0042-02-01T03:04:05.006Z');
  });

  it('reads the German and Postgres styles, which say the order themselves', () => {
    for (const dayFirst of [true, false, undefined]) {
      expect(read('06.12.2026 10:11:12.345', dayFirst)).toBe('2026-12-06T10:11:12.345Z');
      expect(read('Sun Dec 06 10:11:12.345 2026', dayFirst)).toBe('2026-12-06T10:11:12.345Z');
      expect(read('Sun 06 Dec 10:11:12.345 2026', dayFirst)).toBe('2026-12-06T10:11:12.345Z');
      expect(read('Wed Mar 29 02:30:00 2028', dayFirst)).toBe('2028-03-29T02:30:00.000Z');
    }
  });

  it('reads the same in every process zone, the hour a zone skips included', () => {
    const originalTz = process.env['TZ'];
    try {
      for (const zone of ['Europe/Berlin', 'America/New_York', 'Asia/Tokyo']) {
        process.env['TZ'] = zone;
        expect(read('29/03/2026 02:30:00.123', true)).toBe('2026-03-29T02:30:00.123Z');
        expect(read('Sun Mar 08 02:30:00 2026')).toBe('2026-03-08T02:30:00.000Z');
      }
    } finally {
      if (originalTz === undefined) delete process.env['TZ'];
      else process.env['TZ'] = originalTz;
    }
  });
});
