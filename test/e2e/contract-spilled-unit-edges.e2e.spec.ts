import { Body, Controller, Injectable, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited, AuditService, type AuditLogEntity } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { CtrLine, startContractApp, type ContractApp } from './contract-app.js';

class ImportRefused extends Error {}

@Injectable()
class LineService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Audited('ctr.line.added')
  async add(batch: string): Promise<void> {
    await this.dataSource.getRepository(CtrLine).save({ batch, n: 9999 });
  }
}

interface ImportBody {
  batch: string;
  count: number;
  /** After the rows: `throw` (the handler fails), `log` (a manual event), `nested` (a nested @Audited call saving a row). */
  then?: 'throw' | 'log' | 'nested' | 'log-changes';
}

@Controller('ctr-spilled')
class SpilledController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly lines: LineService,
    private readonly audit: AuditService,
  ) {}

  @Post()
  @Audited('ctr.spilled.imported')
  async import(@Body() body: ImportBody): Promise<{ ok: true }> {
    await this.dataSource.transaction((manager) =>
      manager.save(
        CtrLine,
        Array.from({ length: body.count }, (_, n) => manager.create(CtrLine, { batch: body.batch, n })),
        { chunk: 5 },
      ),
    );
    if (body.then === 'throw') throw new ImportRefused('refused after the rows');
    if (body.then === 'log') await this.audit.log({ action: 'ctr.spilled.noted', reason: body.batch });
    if (body.then === 'nested') await this.lines.add(body.batch);
    if (body.then === 'log-changes') {
      const line = await this.dataSource.getRepository(CtrLine).findOneByOrFail({ batch: body.batch, n: 0 });
      await this.audit.log({
        action: 'ctr.spilled.corrected',
        target: { type: 'CtrLine', id: String(line.id) },
        changes: [{ entity: 'CtrLine', id: String(line.id), operation: 'update', fields: { n: { from: 0, to: 0 } } }],
      });
    }
    return { ok: true };
  }
}

/** The handler's parts (all events of `action` of the request): consistent, each row once. */
function expectParts(events: AuditLogEntity[], count: number, perEvent: number): void {
  const sizes = events.map((row) => (row.changes ?? []).length);
  expect(sizes.length).toBe(Math.ceil(count / perEvent));
  expect(sizes.every((size) => size >= 1 && size <= perEvent)).toBe(true);
  const ids = events.flatMap((row) => (row.changes ?? []).map((change) => change.id));
  expect(new Set(ids).size).toBe(count);
  expect(new Set(events.map((row) => row.id)).size).toBe(events.length);
  const parts = events.map((row) => (row.context as { part?: { index: number; count: number; first: string } }).part);
  expect(parts.map((part) => part?.index).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: events.length }, (_, n) => n + 1));
  const first = events[parts.findIndex((part) => part?.index === 1)]!;
  for (const part of parts) expect(part).toMatchObject({ count: events.length, first: first.id });
}

describe.each(databases())('contract: a unit whose changes all went to the journal, at its edges, on %s', (kind) => {
  let db: TestDatabase;

  describe.each([10, 1])('maxChangesPerEvent %i', (perEvent) => {
    let t: ContractApp;
    let n = 0;

    beforeAll(async () => {
      db = await createTestDatabase(kind);
      t = await startContractApp({ db, controllers: [SpilledController], providers: [LineService], audit: { maxChangesPerEvent: perEvent } });
    });
    afterAll(async () => {
      await t?.close();
      await db?.drop();
    });

    const run = async (count: number, then?: ImportBody['then']) => {
      const batch = `s${perEvent}-${count}-${then ?? 'none'}-${++n}`;
      const response = await t.request('/ctr-spilled', { method: 'POST', json: { batch, count, then } });
      const requestId = response.headers.get('x-request-id');
      const rows = (await t.rows()).filter((row) => row.requestId === requestId);
      return { response, rows };
    };

    it.each([5, 10])('%i× five times maxChangesPerEvent rows, the handler throws after them: every part is a failure naming the error', async (times) => {
      const count = times * perEvent;
      const { response, rows } = await run(count, 'throw');
      expect(response.status).toBe(500);
      const events = rows.filter((row) => row.action === 'ctr.spilled.imported');
      expectParts(events, count, perEvent);
      expect(events.map((row) => [row.outcome, row.error])).toEqual(events.map(() => ['failure', { name: 'ImportRefused' }]));
      expect(await t.journal()).toBe(0);
    });

    it('five times maxChangesPerEvent rows, then a log() event: both stored, the parts whole', async () => {
      const count = 5 * perEvent;
      const { response, rows } = await run(count, 'log');
      expect(response.status).toBe(201);
      expectParts(rows.filter((row) => row.action === 'ctr.spilled.imported'), count, perEvent);
      expect(rows.filter((row) => row.action === 'ctr.spilled.noted').length).toBe(1);
      expect(await t.journal()).toBe(0);
    });

    it('five times maxChangesPerEvent rows, then a nested @Audited call saving a row: it claims its own insert', async () => {
      const count = 5 * perEvent;
      const { response, rows } = await run(count, 'nested');
      expect(response.status).toBe(201);
      expectParts(rows.filter((row) => row.action === 'ctr.spilled.imported'), count, perEvent);
      const nested = rows.filter((row) => row.action === 'ctr.line.added');
      expect(nested.map((row) => (row.changes ?? []).length)).toEqual([1]);
      expect(await t.journal()).toBe(0);
    });

    it('five times maxChangesPerEvent rows, then a log() event on one of them with explicit changes: every row once, the explicit change in the log event', async () => {
      const count = 5 * perEvent;
      const { response, rows } = await run(count, 'log-changes');
      expect(response.status).toBe(201);
      const logged = rows.filter((row) => row.action === 'ctr.spilled.corrected');
      expect(logged.length).toBe(1);
      expect(logged[0]!.changes).toEqual(expect.arrayContaining([expect.objectContaining({ entity: 'CtrLine', operation: 'update' })]));
      const inserts = rows.flatMap((row) => row.changes ?? []).filter((change) => change.operation === 'insert');
      expect(inserts).toHaveLength(count);
      expect(new Set(inserts.map((change) => change.id)).size).toBe(count);
      const events = rows.filter((row) => row.action === 'ctr.spilled.imported');
      for (const row of events) expect((row.changes ?? []).length).toBeGreaterThanOrEqual(1);
      expect(await t.journal()).toBe(0);
    });
  });
});
