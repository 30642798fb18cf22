// An app instance taken for dead while it is alive (a VM freeze, a blocked event loop, a
// lease renewal stuck behind a saturated pool, for longer than `recoverAfter`), and the
// instance that recovers its journal rows meanwhile: what the tests of that case share.
import type { INestApplication } from '@nestjs/common';
import { afterAll, afterEach, beforeAll, vi, type MockInstance } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, type AuditModuleOptions } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { sharedDatabase, type TestDatabase } from './test-database.js';

/** Opened by the test: a handler waiting on it goes on only then (as a paused process resumes). */
export const gate: { open?: () => void; opened: Promise<void> } = { opened: Promise.resolve() };

export function closeGate(): void {
  gate.opened = new Promise<void>((resolve) => (gate.open = resolve));
}

export { sharedDatabase };

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface PausedInstances {
  db(): TestDatabase;
  /** The instance that recovers (recoverAfter 1 s). */
  rescuer(): TestApp;
  /** Starts the instance to be paused (closed after the test); `recoverAfter` 60 s unless `audit` says otherwise. */
  start(options: Omit<Parameters<typeof createTestApp>[0], 'db' | 'adapter'>): Promise<TestApp>;
}

/**
 * Turns the timer passes of `rescuer`'s recovery off until the returned spy is restored: the
 * test takes the paused instance for dead and runs the rescuer's passes. The paused instance
 * renews its lease every 20 s (its recoverAfter is 60 s); to a timer pass of the rescuer
 * (recoverAfter 1 s) it would look dead a second after its start and, while it had no journal
 * rows, lose its lease (its rows then recovered as orphans, or not by the test's pass).
 */
export function withoutTimerPasses(rescuer: INestApplication): MockInstance {
  return vi.spyOn(rescuer.get(JournalRecovery) as unknown as { timedPass: () => Promise<void> }, 'timedPass').mockResolvedValue(undefined);
}

/** A shared database, the rescuer for the whole file (`rescuerAudit` added to its options), and the paused instance per test (its gate opened and the app closed after it). */
export function pausedInstances(kind: TestDatabase['kind'], rescuerAudit: AuditModuleOptions = {}): PausedInstances {
  let db: TestDatabase;
  let rescuer: TestApp;
  let paused: TestApp | undefined;
  let timerPasses: MockInstance | undefined;
  beforeAll(async () => {
    db = await sharedDatabase(kind);
    rescuer = await createTestApp({ db, adapter: 'express', audit: { recoverAfter: 1_000, shutdownTimeout: 500, ...rescuerAudit } });
  });
  afterEach(async () => {
    gate.open?.();
    await paused?.close().catch(() => undefined);
    paused = undefined;
    timerPasses?.mockRestore();
    timerPasses = undefined;
  });
  afterAll(async () => {
    await rescuer?.close().catch(() => undefined);
    await db?.drop();
  });
  return {
    db: () => db,
    rescuer: () => rescuer,
    start: async (options) => {
      timerPasses = withoutTimerPasses(rescuer.app);
      paused = await createTestApp({ ...options, db, adapter: 'express', audit: { recoverAfter: 60_000, shutdownTimeout: 500, ...options.audit } });
      return paused;
    },
  };
}

/** Waits until `app` has journal rows (its handler committed and waits at the gate); returns how many. */
export async function journaled(app: TestApp): Promise<number> {
  const journal = app.dataSource.getRepository(AuditJournalEntity);
  for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
  return journal.count();
}

/** Ages `app`'s lease as a pause would leave it, and has `rescuer` recover its journal rows. */
export async function takeForDead(app: TestApp, rescuer: TestApp): Promise<void> {
  const id = app.app.get(JournalRecovery).instanceId;
  await app.dataSource.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
  await rescuer.app.get(JournalRecovery).runPass();
}
