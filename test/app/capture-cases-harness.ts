import { Controller, Param, Post } from '@nestjs/common';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { DataSource } from 'typeorm';
import { Audited, type AuditChange, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from './create-test-app.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from '../support/test-database.js';
import { CASE_ENTITIES } from './capture-cases-entities.js';

const scenarios = new Map<string, () => Promise<unknown>>();

@Controller('cases')
class CaseController {
  @Post(':name')
  @Audited('case.run')
  async run(@Param('name') name: string): Promise<{ ok: true }> {
    await scenarios.get(name)!();
    return { ok: true };
  }
}

/** Where a case's write runs: in an `@Audited` HTTP handler, or outside any unit of work (a fallback event). */
export type Mode = 'handler' | 'fallback';
export const MODES: Mode[] = ['handler', 'fallback'];

/** One app per suite on `kind`, with the capture cases' entities and a `POST /cases/:name` @Audited('case.run') route. */
export function captureCasesApp(kind: DatabaseKind) {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: CASE_ENTITIES as never, controllers: [CaseController] });
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
    /** Runs `fn` in an @Audited handler (HTTP) or outside any unit; a thrown error is returned. */
    async run(mode: Mode, fn: () => Promise<unknown>): Promise<{ status: number | null; error: unknown }> {
      if (mode === 'handler') {
        const name = `s${Math.random().toString(36).slice(2, 10)}`;
        scenarios.set(name, fn);
        const response = await t.request(`/cases/${name}`, { method: 'POST' });
        scenarios.delete(name);
        return { status: response.status, error: null };
      }
      try {
        await fn();
        return { status: null, error: null };
      } catch (error) {
        return { status: null, error };
      }
    },
    /** Every change of every stored event, in order. */
    async changes(): Promise<AuditChange[]> {
      return (await t.rows()).flatMap((row: AuditLogEntity) => row.changes ?? []);
    },
  };
}
