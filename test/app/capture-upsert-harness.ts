import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { DataSource } from 'typeorm';
import type { AuditChange, AuditLogEntity, AuditModuleOptions } from '../../lib/index.js';
import { createTestApp, type TestApp } from './create-test-app.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from '../support/test-database.js';
import { CaptureCasesController, captureScenarios } from './capture-upsert-app.js';
import { CAPTURE_CASES_ENTITIES } from './capture-upsert-entities.js';

/** Where a write runs: in an `@Audited` HTTP handler, or outside any unit of work (fallback events). */
export type Mode = 'handler' | 'fallback';
export const MODES: Mode[] = ['handler', 'fallback'];

/** One app per suite on `kind`, with the capture-cases entities and a `POST /capture-cases/:name` @Audited('capture.run') route. */
export function captureCasesApp(kind: DatabaseKind, audit: AuditModuleOptions = {}) {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: CAPTURE_CASES_ENTITIES as never, controllers: [CaptureCasesController], audit });
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
    /** Runs `fn` in an @Audited handler (HTTP) or outside any unit; resolves to the HTTP status (handler) or null; a thrown error is returned. */
    async run(mode: Mode, fn: () => Promise<unknown>): Promise<{ status: number | null; error: unknown }> {
      if (mode === 'handler') {
        const name = `s${Math.random().toString(36).slice(2, 10)}`;
        captureScenarios.set(name, fn);
        const response = await t.request(`/capture-cases/${name}`, { method: 'POST' });
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
