import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ImportLine } from '../app/import-line.entity.js';
import { NestedOrderWriter, RecordPathController } from '../app/record-path.controller.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const LINES = 60_000;
const MIB = 1024 * 1024;

/** A full garbage collection: `global.gc` when the process has it, else the same function exposed now. */
const collectGarbage: () => void = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

const heapUsed = (): number => {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().heapUsed;
};

describe.each(databases())('a 60,000-row @Audited import on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: [ImportLine], controllers: [RecordPathController], providers: [NestedOrderWriter] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('answers 2xx with a complete trail: every inserted id exactly once (or exact partial counts), no changes JSON over 1 MiB, bounded heap', { timeout: 60_000 }, async () => {
    const batch = `import-${kind}`;
    const before = heapUsed();
    const response = await t.request('/record-path/import', {
      method: 'POST',
      json: { batch, count: LINES },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': `import-${kind}` },
      signal: AbortSignal.timeout(50_000),
    });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ batch, count: LINES });
    const growth = heapUsed() - before;

    const inserted = (await t.dataSource.getRepository(ImportLine).find({ select: { id: true }, where: { batch } })).map((line) => String(line.id));
    expect(inserted).toHaveLength(LINES);

    const rows = (await t.rows()).filter((row) => row.requestId === `import-${kind}`);
    expect(rows.length).toBeGreaterThan(0);
    // The handler's event claims every change, in as many parts as it takes.
    expect(rows.filter((row) => row.kind !== 'intent' || row.action !== 'lines.imported').map((row) => [row.kind, row.action])).toEqual([]);
    if (rows.length > 1) {
      const parts = rows.map((row) => JSON.stringify(row.context?.['part']));
      expect(parts.filter((part) => part === undefined)).toEqual([]);
      expect(new Set(parts).size).toBe(rows.length);
    }
    const oversized = rows
      .map((row) => Buffer.byteLength(JSON.stringify(row.changes ?? []), 'utf8'))
      .filter((bytes) => bytes > MIB);
    expect(oversized, 'bytes of `changes` JSON of each stored row over 1 MiB').toEqual([]);

    const changes: AuditChange[] = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'ImportLine');
    const exact = changes.filter((change) => !change.partial);
    const partial = changes.filter((change) => change.partial) as Array<AuditChange & { count?: unknown }>;
    expect(exact.filter((change) => change.operation !== 'insert')).toEqual([]);
    expect(partial.filter((change) => change.operation !== 'insert' || typeof change.count !== 'number')).toEqual([]);
    const ids = exact.map((change) => change.id);
    const known = new Set(inserted);
    expect(ids.filter((id) => id === null || !known.has(id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length); // no id twice
    const summarised = partial.reduce((sum, change) => sum + (change.count as number), 0);
    expect(ids.length + summarised).toBe(LINES);

    expect(growth, `heap grew by ${(growth / MIB).toFixed(1)} MiB`).toBeLessThan(150 * MIB);
  });
});
