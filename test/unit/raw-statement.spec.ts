import { describe, expect, it } from 'vitest';
import { mayWrite, rawWrites, type RawTable, type RawWrite } from '../../lib/capture/raw-statement.js';

const table = (name: string, extra: Partial<RawTable> = {}): RawTable => ({ name, quoted: false, ...extra });
const write = (verb: RawWrite['verb'], name: string | null, extra: Partial<RawTable> = {}): RawWrite => ({ verb, table: name === null ? null : table(name, extra) });

describe('raw statement classifier', () => {
  describe('mayWrite (the check run for every statement)', () => {
    it.each([
      'SELECT * FROM orders',
      '  select 1',
      'SHOW TABLES',
      'BEGIN',
      'START TRANSACTION',
      'SAVEPOINT typeorm_1',
      'RELEASE SAVEPOINT typeorm_1',
      'ROLLBACK',
      'COMMIT',
      'SET search_path = x',
      'PRAGMA foreign_keys = ON',
      '/* UPDATE orders */ SELECT 1',
      '-- DELETE FROM orders\nSELECT 1',
      'SELECT id FROM orders FOR UPDATE',
      'updated_at',
      'withdrawn',
      '',
      '/* unterminated',
    ])('false for %j', (sql) => {
      expect(mayWrite(sql)).toBe(false);
    });

    it.each([
      'UPDATE orders SET a = 1',
      'insert into orders values (1)',
      'Delete From orders',
      'REPLACE INTO orders VALUES (1)',
      'MERGE INTO orders USING s ON true WHEN MATCHED THEN DELETE',
      'TRUNCATE orders',
      'WITH x AS (SELECT 1) SELECT * FROM x',
      '/* app */ UPDATE orders SET a = 1',
      '/* a */ /* b */\n-- c\n  UPDATE orders SET a = 1',
      '# mysql\nUPDATE orders SET a = 1',
      '(WITH x AS (SELECT 1) SELECT 1)',
      'SELECT 1; UPDATE orders SET a = 1',
    ])('true for %j', (sql) => {
      expect(mayWrite(sql)).toBe(true);
    });
  });

  describe('rawWrites', () => {
    it.each<[string, RawWrite[]]>([
      // verbs and their modifiers
      ['UPDATE orders SET note = 1', [write('update', 'orders')]],
      ['update Orders set note = 1', [write('update', 'Orders')]],
      ['UPDATE ORDERS SET note = 1', [write('update', 'ORDERS')]],
      ['DELETE FROM orders WHERE id = 1', [write('delete', 'orders')]],
      ['INSERT INTO orders (a) VALUES (1)', [write('insert', 'orders')]],
      ['INSERT orders (a) VALUES (1)', [write('insert', 'orders')]],
      ['INSERT IGNORE INTO orders (a) VALUES (1)', [write('insert', 'orders')]],
      ['INSERT LOW_PRIORITY IGNORE INTO orders VALUES (1)', [write('insert', 'orders')]],
      ['INSERT OR REPLACE INTO orders VALUES (1)', [write('insert', 'orders')]],
      ['INSERT OR IGNORE INTO orders VALUES (1)', [write('insert', 'orders')]],
      ['INSERT INTO orders AS o (a) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a', [write('insert', 'orders')]],
      ['INSERT INTO orders (a) VALUES (1) ON DUPLICATE KEY UPDATE a = 2', [write('insert', 'orders')]],
      ['REPLACE INTO orders VALUES (1)', [write('replace', 'orders')]],
      ['REPLACE orders VALUES (1)', [write('replace', 'orders')]],
      ['UPDATE ONLY orders SET a = 1', [write('update', 'orders')]],
      ['DELETE FROM ONLY orders', [write('delete', 'orders')]],
      ['UPDATE LOW_PRIORITY IGNORE orders SET a = 1', [write('update', 'orders')]],
      ['UPDATE OR IGNORE orders SET a = 1', [write('update', 'orders')]],
      ['DELETE LOW_PRIORITY QUICK IGNORE FROM orders', [write('delete', 'orders')]],
      ['MERGE INTO orders o USING s ON o.id = s.id WHEN MATCHED THEN UPDATE SET a = 1', [write('merge', 'orders')]],
      ['TRUNCATE orders', [write('truncate', 'orders')]],
      ['TRUNCATE TABLE ONLY orders, public.customers * RESTART IDENTITY', [write('truncate', 'orders'), write('truncate', 'customers', { schema: 'public' })]],
      // names: quoted, qualified
      ['UPDATE "orders" SET a = 1', [write('update', 'orders', { quoted: true })]],
      ['UPDATE "Or""ders" SET a = 1', [write('update', 'Or"ders', { quoted: true })]],
      ['UPDATE `orders` SET a = 1', [write('update', 'orders', { quoted: true })]],
      ['UPDATE [orders] SET a = 1', [write('update', 'orders', { quoted: true })]],
      ['UPDATE app.orders SET a = 1', [write('update', 'orders', { schema: 'app' })]],
      ['UPDATE "app"."orders" SET a = 1', [write('update', 'orders', { schema: 'app', quoted: true })]],
      ['UPDATE `app`.orders SET a = 1', [write('update', 'orders', { schema: 'app' })]],
      ['UPDATE db.app.orders SET a = 1', [write('update', 'orders', { schema: 'app' })]],
      ['UPDATE "my table" SET a = 1', [write('update', 'my table', { quoted: true })]],
      // leading comments and spaces
      ['/* app */ UPDATE orders SET a = 1', [write('update', 'orders')]],
      ['/* outer /* nested */ still */ UPDATE orders SET a = 1', [write('update', 'orders')]],
      ['-- x\nUPDATE orders SET a = 1', [write('update', 'orders')]],
      ['\n\t  -- x\n /* y */ DELETE /* z */ FROM /* w */ orders', [write('delete', 'orders')]],
      ['(UPDATE orders SET a = 1)', [write('update', 'orders')]],
      // CTEs
      ['WITH x AS (SELECT 1) UPDATE orders SET a = 1', [write('update', 'orders')]],
      ['WITH RECURSIVE x (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x) DELETE FROM orders', [write('delete', 'orders')]],
      ['WITH x AS MATERIALIZED (SELECT 1), y AS NOT MATERIALIZED (SELECT 2) INSERT INTO orders SELECT 1', [write('insert', 'orders')]],
      ['WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d', [write('delete', 'orders')]],
      [
        'WITH d AS (DELETE FROM orders RETURNING id), u AS (UPDATE customers SET a = 1 RETURNING id) INSERT INTO log SELECT id FROM d',
        [write('delete', 'orders'), write('update', 'customers'), write('insert', 'log')],
      ],
      ['WITH x AS (SELECT 1) SELECT * FROM x', []],
      // statements
      ['SELECT 1; UPDATE orders SET a = 1; DELETE FROM customers;', [write('update', 'orders'), write('delete', 'customers')]],
      // MySQL multi-table writes
      ['DELETE o FROM orders AS o JOIN customers c ON c.id = o.customer_id', [write('delete', 'orders')]],
      ['DELETE o, c FROM orders o, customers c WHERE c.id = o.customer_id', [write('delete', 'orders'), write('delete', 'customers')]],
      ['DELETE FROM orders USING orders JOIN customers', [write('delete', 'orders')]],
      ['UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.a = 1', [write('update', 'orders')]],
      // literals never count
      ["SELECT 'UPDATE orders SET a = 1'", []],
      ["SELECT 'it''s; UPDATE orders'", []],
      ['SELECT $$; DELETE FROM orders$$', []],
      ['SELECT $tag$ ; DELETE FROM orders $tag$', []],
      ["SELECT E'\\'; DELETE FROM orders'", []],
      ['SELECT 1 FROM orders WHERE a = $1', []],
      ["UPDATE orders SET a = 'x;y' WHERE b = \"c;d\"", [write('update', 'orders')]],
      // reads
      ['SELECT * FROM orders FOR UPDATE', []],
      ['SELECT replace(a, b, c) FROM orders', []],
      ['EXPLAIN SELECT 1', []],
      ['', []],
    ])('%j', (sql, expected) => {
      expect(rawWrites(sql)).toEqual(expected);
    });

    it('MySQL strings take backslash escapes and # starts a comment', () => {
      expect(rawWrites("SELECT 'a\\'; DELETE FROM orders'", { mysql: true })).toEqual([]);
      expect(rawWrites('# note\nUPDATE orders SET a = 1', { mysql: true })).toEqual([write('update', 'orders')]);
      // Elsewhere a backslash is an ordinary character.
      expect(rawWrites("SELECT 'a\\'; DELETE FROM orders")).toEqual([write('delete', 'orders')]);
    });

    it('a write whose target cannot be read is reported without a table', () => {
      expect(rawWrites('UPDATE')).toEqual([write('update', null)]);
      expect(rawWrites('DELETE FROM (SELECT 1)')).toEqual([write('delete', null)]);
      expect(rawWrites('TRUNCATE')).toEqual([write('truncate', null)]);
    });

    it('a WITH list it cannot follow still reports the writes that start its parts', () => {
      expect(rawWrites('WITH d AS (DELETE FROM orders RETURNING *), , (UPDATE x) SELECT 1')).toEqual([write('delete', null), write('update', null)]);
      expect(rawWrites('WITH broken AS SELECT 1) UPDATE orders SET a = 1')).toEqual([write('update', null)]);
    });
  });
});
