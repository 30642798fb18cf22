import { Controller, Param, Post } from '@nestjs/common';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { DataSource } from 'typeorm';
import { Audited, type AuditChange, type AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { createTestApp, type TestApp } from './create-test-app.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

/** Where a write runs: in an `@Audited` HTTP handler, or outside any unit of work. */
export type Mode = 'handler' | 'fallback';
export const MODES: Mode[] = ['handler', 'fallback'];

const scenarios = new Map<string, () => Promise<unknown>>();

@Controller('edge')
class EdgeController {
  @Post(':name')
  @Audited('edge.run')
  async run(@Param('name') name: string): Promise<{ ok: true }> {
    await scenarios.get(name)!();
    return { ok: true };
  }
}

/**
 * One app per suite on `kind` with `entities` (and module `audit` options), and a `POST /edge/:name` @Audited('edge.run') route running a write: each capture case runs the same write in that handler and outside any unit of work.
 * `pool`: the number of connections the data source's pool holds (PostgreSQL, MariaDB).
 */
export function captureApp(kind: DatabaseKind, entities: Array<new (...args: never[]) => unknown>, audit: AuditModuleOptions = {}, { pool }: { pool?: number } = {}) {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    if (pool !== undefined && kind !== 'sqlite') db.options = { ...db.options, extra: kind === 'postgres' ? { max: pool } : { connectionLimit: pool } } as typeof db.options;
    t = await createTestApp({ db, adapter: 'express', entities, controllers: [EdgeController], audit });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });
  return {
    get t(): TestApp {
      return t;
    },
    get ds(): DataSource {
      return t.dataSource;
    },
    get db(): TestDatabase {
      return db;
    },
    /** Runs `fn` in the @Audited handler (HTTP) or outside any unit; resolves to the HTTP status (handler) or null, and what `fn` threw. */
    async run(mode: Mode, fn: () => Promise<unknown>): Promise<{ status: number | null; error: unknown }> {
      if (mode === 'handler') {
        const name = `s${Math.random().toString(36).slice(2, 10)}`;
        scenarios.set(name, fn);
        try {
          const response = await t.request(`/edge/${name}`, { method: 'POST' });
          return { status: response.status, error: null };
        } finally {
          scenarios.delete(name);
        }
      }
      try {
        await fn();
        return { status: null, error: null };
      } catch (error) {
        return { status: null, error };
      }
    },
    /** `name` as raw SQL names the table (schema-qualified on PostgreSQL). */
    table(name: string): string {
      return kind === 'postgres' ? `"${(t.dataSource.options as { schema: string }).schema}".${name}` : name;
    },
    /** The `n`th (1-based) parameter placeholder of raw SQL. */
    param(n: number): string {
      return kind === 'postgres' ? `$${n}` : '?';
    },
    /** Whether the pool's connection a statement gets now is in a transaction (PostgreSQL: one that began before this statement). */
    async inTransaction(): Promise<boolean> {
      const sql = kind === 'postgres' ? 'SELECT transaction_timestamp() <> statement_timestamp() AS open' : 'SELECT @@in_transaction AS open';
      const [row] = (await t.dataSource.query(sql)) as Array<{ open: unknown }>;
      return row?.open === true || Number(row?.open) === 1;
    },
    /** Every change of every stored event, in order. */
    async changes(): Promise<AuditChange[]> {
      return (await t.rows()).flatMap((row: AuditLogEntity) => row.changes ?? []);
    },
  };
}
