import { describe, expect, it } from 'vitest';
import { mayWrite, rawWrites, savepointStatement, transactionEnd, type RawTable, type RawWrite } from '../../lib/capture/raw-statement.js';

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

describe('raw statement classifier: how each server reads comments and spaces', () => {
  it('MySQL ends a block comment at the first */ (no nesting); PostgreSQL nests them', () => {
    const sql = "/* a /* b */ UPDATE orders SET note = 'raw' -- */";
    expect(mayWrite(sql)).toBe(true);
    expect(rawWrites(sql, { mysql: true })).toEqual([write('update', 'orders')]);
    expect(rawWrites(sql)).toEqual([]);
  });

  it('MySQL runs what an executable comment holds (/*! … */, /*!40000 … */, /*M!100100 … */)', () => {
    for (const sql of ["/*!40000 UPDATE orders SET note = 'raw' */", "/*! UPDATE orders SET note = 'raw' */", "/*M!100100 DELETE FROM orders */"]) {
      expect(mayWrite(sql)).toBe(true);
      expect(rawWrites(sql, { mysql: true })).toHaveLength(1);
      // Elsewhere it is a comment.
      expect(rawWrites(sql)).toEqual([]);
    }
  });

  it('a -- comment ends at a carriage return, and a form feed or vertical tab is space', () => {
    for (const sql of ["-- maintenance\rUPDATE orders SET note = 'raw'", "\fUPDATE orders SET note = 'raw'", "\vUPDATE orders SET note = 'raw'", "# x\rUPDATE orders SET note = 'raw'"]) {
      expect(mayWrite(sql)).toBe(true);
      expect(rawWrites(sql, { mysql: true })).toEqual([write('update', 'orders')]);
    }
  });

  it('a multi-table UPDATE (MySQL) writes the tables its SET list names', () => {
    expect(rawWrites("UPDATE customers c RIGHT JOIN orders o ON o.customerId = c.id SET o.note = 'raw'", { mysql: true })).toEqual([write('update', 'orders')]);
    expect(rawWrites("UPDATE customers c, orders o SET o.note = 'raw', c.name = 'x'", { mysql: true })).toEqual([write('update', 'customers'), write('update', 'orders')]);
    expect(rawWrites("UPDATE customers JOIN orders ON orders.customerId = customers.id SET orders.note = 'raw'", { mysql: true })).toEqual([write('update', 'orders')]);
    // An unqualified column may belong to either table: both are reported.
    expect(rawWrites("UPDATE customers c JOIN orders o ON o.customerId = c.id SET note = 'raw'", { mysql: true })).toEqual([write('update', 'customers'), write('update', 'orders')]);
    // A single-table UPDATE is read as before.
    expect(rawWrites("UPDATE orders o SET o.note = (SELECT 1 FROM customers c, t WHERE c.id = 1)", { mysql: true })).toEqual([write('update', 'orders')]);
  });

  it('reads deeply parenthesised statements in linear time', () => {
    const depth = 100_000;
    const sql = `${'('.repeat(depth)}UPDATE orders SET note = 'raw'${')'.repeat(depth)}`;
    const started = performance.now();
    expect(rawWrites(sql)).toEqual([write('update', 'orders')]);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('statements that end a transaction', () => {
  const commit = { ends: 'commit', reopens: false };
  const rollback = { ends: 'rollback', reopens: false };

  it('COMMIT and ROLLBACK in their spellings, on every database', () => {
    for (const dialect of ['postgres', 'mysql', 'sqlite'] as const) {
      expect(transactionEnd('COMMIT', dialect)).toEqual(commit);
      expect(transactionEnd('  /* done */ commit', dialect)).toEqual(commit);
      expect(transactionEnd('ROLLBACK', dialect)).toEqual(rollback);
      expect(transactionEnd('ROLLBACK TO SAVEPOINT typeorm_1', dialect)).toBeUndefined();
      expect(transactionEnd('rollback to typeorm_1', dialect)).toBeUndefined();
      expect(transactionEnd('SAVEPOINT typeorm_1', dialect)).toBeUndefined();
      expect(transactionEnd('RELEASE SAVEPOINT typeorm_1', dialect)).toBeUndefined();
      expect(transactionEnd('INSERT INTO t VALUES (1)', dialect)).toBeUndefined();
      expect(transactionEnd("INSERT INTO t VALUES ('COMMIT; ROLLBACK')", dialect)).toBeUndefined();
      expect(transactionEnd('SELECT 1', dialect)).toBeUndefined();
    }
    expect(transactionEnd('COMMIT WORK', 'mysql')).toEqual(commit);
    expect(transactionEnd('END', 'postgres')).toEqual(commit);
    expect(transactionEnd('end transaction', 'sqlite')).toEqual(commit);
    expect(transactionEnd('ABORT', 'postgres')).toEqual(rollback);
    expect(transactionEnd("COMMIT PREPARED 'x'", 'postgres')).toBeUndefined();
    expect(transactionEnd("PREPARE TRANSACTION 'x'", 'postgres')).toEqual({ ends: 'commit', reopens: false, prepares: true });
    expect(transactionEnd("/* 2pc */ prepare transaction 'x';", 'postgres')).toEqual({ ends: 'commit', reopens: false, prepares: true });
    expect(transactionEnd('PREPARE q AS SELECT 1', 'postgres')).toBeUndefined();
    expect(transactionEnd('PREPARE TRANSACTION $$x$$', 'postgres')).toEqual({ ends: 'commit', reopens: false, prepares: true });
    // A prepared statement named "transaction" (no reserved word): no commit point.
    expect(transactionEnd('PREPARE transaction AS SELECT 1', 'postgres')).toBeUndefined();
    expect(transactionEnd('prepare Transaction (int) AS SELECT $1', 'postgres')).toBeUndefined();
    expect(transactionEnd('PREPARE /* x */ transaction AS SELECT 1', 'postgres')).toBeUndefined();
    expect(transactionEnd('PREPARE q FROM "SELECT 1"', 'mysql')).toBeUndefined();
    expect(transactionEnd('COMMIT AND CHAIN', 'postgres')).toEqual({ ends: 'commit', reopens: true });
    expect(transactionEnd('COMMIT AND NO CHAIN', 'mysql')).toEqual(commit);
    expect(transactionEnd('INSERT INTO t VALUES (1); COMMIT', 'postgres')).toEqual(commit);
    expect(transactionEnd('COMMIT; BEGIN', 'postgres')).toEqual({ ends: 'commit', reopens: true });
  });

  it('MySQL and MariaDB: the statements that commit implicitly, and those that do not', () => {
    for (const sql of [
      'TRUNCATE TABLE staging',
      'truncate staging',
      'CREATE TABLE t (id int)',
      'CREATE OR REPLACE TABLE t (id int)',
      'CREATE INDEX i ON t (id)',
      'ALTER TABLE t ADD c int',
      'DROP TABLE t',
      'DROP VIEW v',
      'RENAME TABLE a TO b',
      'LOCK TABLES t WRITE',
      'ANALYZE TABLE t',
      'OPTIMIZE NO_WRITE_TO_BINLOG TABLE t',
      'FLUSH PRIVILEGES',
      'GRANT SELECT ON db.* TO u',
      "SET PASSWORD = PASSWORD('x')",
      '/*!40000 ALTER TABLE t DISABLE KEYS */',
    ]) {
      expect(transactionEnd(sql, 'mysql'), sql).toEqual(commit);
    }
    expect(transactionEnd('BEGIN', 'mysql')).toEqual({ ends: 'commit', reopens: true });
    expect(transactionEnd('START TRANSACTION', 'mysql')).toEqual({ ends: 'commit', reopens: true });
    for (const sql of [
      'CREATE TEMPORARY TABLE t (id int)',
      'CREATE OR REPLACE TEMPORARY TABLE t (id int)',
      'DROP TEMPORARY TABLE t',
      'DROP PREPARE s',
      'BEGIN NOT ATOMIC SELECT 1; END',
      'ANALYZE SELECT 1',
      'SET @a = 1',
      'LOAD DATA INFILE "f" INTO TABLE t',
    ]) {
      expect(transactionEnd(sql, 'mysql'), sql).toBeUndefined();
    }
    // PostgreSQL and SQLite run DDL and TRUNCATE in the transaction.
    expect(transactionEnd('TRUNCATE TABLE staging', 'postgres')).toBeUndefined();
    expect(transactionEnd('CREATE TABLE t (id int)', 'postgres')).toBeUndefined();
    expect(transactionEnd('BEGIN', 'postgres')).toBeUndefined();
    expect(transactionEnd('DROP TABLE t', 'sqlite')).toBeUndefined();
  });
});

describe('savepointStatement', () => {
  it.each([
    ['SAVEPOINT draft', { verb: 'savepoint', name: 'draft', quoted: false }],
    ['  savepoint Draft ;', { verb: 'savepoint', name: 'Draft', quoted: false }],
    ['/* app */ ROLLBACK TO SAVEPOINT draft', { verb: 'rollback', name: 'draft', quoted: false }],
    ['rollback work to draft', { verb: 'rollback', name: 'draft', quoted: false }],
    ['ROLLBACK TRANSACTION TO SAVEPOINT "Draft"', { verb: 'rollback', name: 'Draft', quoted: true }],
    ['RELEASE SAVEPOINT `a b`', { verb: 'release', name: 'a b', quoted: true }],
    ['RELEASE draft', { verb: 'release', name: 'draft', quoted: false }],
    ['RELEASE savepoint', { verb: 'release', name: 'savepoint', quoted: false }],
  ])('%s', (sql, expected) => {
    expect(savepointStatement(sql)).toEqual(expected);
  });

  it.each(['ROLLBACK', 'ROLLBACK WORK', 'SAVEPOINT', 'SELECT 1', 'SAVEPOINT a; INSERT INTO t VALUES (1)', 'RELEASE SAVEPOINT a b', 'REPLACE INTO t VALUES (1)', '(SAVEPOINT a)', 'ROLLBACK TO'])(
    'not one: %s',
    (sql) => {
      expect(savepointStatement(sql)).toBeUndefined();
    },
  );

  it('reads MySQL comments and quoting', () => {
    expect(savepointStatement('# note\nSAVEPOINT `x`', { mysql: true })).toEqual({ verb: 'savepoint', name: 'x', quoted: true });
  });
});
