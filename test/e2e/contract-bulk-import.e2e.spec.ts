import { Body, Controller, Patch, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { CtrLine, contractAppFor, type ContractApp } from './contract-app.js';

// A multiple of five times maxChangesPerEvent (what a unit keeps in memory before the journal takes the rest).
const ROWS = 20_000;

@Controller('ctr-bulk')
class BulkController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** `count` rows saved in one transaction (in chunks), as an import does. */
  @Post()
  @Audited('ctr.bulk.imported')
  async import(@Body() body: { batch: string; count: number }): Promise<{ count: number }> {
    await this.dataSource.transaction((manager) =>
      manager.save(
        CtrLine,
        Array.from({ length: body.count }, (_, n) => manager.create(CtrLine, { batch: body.batch, n })),
        { chunk: 500 },
      ),
    );
    return { count: body.count };
  }

  /** One update by criteria over every row of a batch. */
  @Patch()
  @Audited('ctr.bulk.renumbered')
  async renumber(@Body() body: { batch: string }): Promise<{ affected: number }> {
    const result = await this.dataSource.getRepository(CtrLine).update({ batch: body.batch }, { n: -1 });
    return { affected: result.affected ?? -1 };
  }
}

describe.each(databases())('contract: a bulk import of %s rows is recorded in full, on %s'.replace('%s rows', `${ROWS} rows`), (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [BulkController] }, (app) => (t = app));

  it('one @Audited import: 2xx, several parts of the same intent, every row once, no fallback', { timeout: 120_000 }, async () => {
    const response = await t.request('/ctr-bulk', { method: 'POST', json: { batch: 'b1', count: ROWS }, signal: AbortSignal.timeout(100_000) });
    expect(response.status).toBe(201);
    const requestId = response.headers.get('x-request-id');
    const rows = await t.rows();
    const parts = rows.filter((row) => row.action === 'ctr.bulk.imported');
    expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
    const first = parts.find((row) => (row.context as { part?: { index: number } } | null)?.part?.index === 1)!;
    expect(first).toBeDefined();
    expect(parts.map((row) => (row.context as { part: { index: number } }).part.index).sort((x, y) => x - y)).toEqual(parts.map((_, i) => i + 1));
    for (const part of parts) {
      expect(part.context).toMatchObject({ part: { count: parts.length, first: first.id } });
      expect([part.kind, part.outcome, part.requestId, part.actorType]).toEqual(['intent', 'success', requestId, 'anonymous']);
    }
    const ids = parts.flatMap((part) => (part.changes ?? []).map((change) => change.id));
    expect(parts.flatMap((part) => part.changes ?? []).every((change) => change.entity === 'CtrLine' && change.operation === 'insert' && !change.partial)).toBe(true);
    expect(new Set(ids).size).toBe(ROWS);
    expect(ids).toHaveLength(ROWS);
    const stored = await t.dataSource.getRepository(CtrLine).find({ select: { id: true }, where: { batch: 'b1' } });
    expect(new Set(ids)).toEqual(new Set(stored.map((line) => String(line.id))));
    expect(await t.journal()).toBe(0);
    // As "a 60,000-row import [...] gives 60 events of 1,000 changes each": no part without changes.
    expect(parts.map((row) => row.changes?.length ?? 0)).toEqual(Array.from({ length: ROWS / 1000 }, () => 1000));
  });

  it('an update by criteria over those rows: 2xx, at most maxCriteriaRows recorded one by one and the rest counted exactly', { timeout: 120_000 }, async () => {
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-bulk', { method: 'PATCH', json: { batch: 'b1' }, signal: AbortSignal.timeout(100_000) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ affected: ROWS });
    const rows = (await t.rows()).slice(before);
    expect(rows.every((row) => row.action === 'ctr.bulk.renumbered' && row.kind === 'intent')).toBe(true);
    const changes = rows.flatMap((row) => row.changes ?? []);
    const exact = changes.filter((change) => !change.partial);
    const counted = changes.filter((change) => change.partial).reduce((sum, change) => sum + (change.count ?? Number.NaN), 0);
    expect(exact.length).toBeLessThanOrEqual(1000);
    expect(new Set(exact.map((change) => change.id)).size).toBe(exact.length);
    expect(exact.length + counted).toBe(ROWS);
    for (const change of exact) expect(change.fields).toEqual({ n: { from: expect.any(Number), to: -1 } });
    expect(await t.journal()).toBe(0);
  });
});
