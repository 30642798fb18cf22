import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { CtrLine, contractAppFor, type ContractApp } from './contract-app.js';

const PER_EVENT = 10;

@Controller('ctr-parts')
class PartsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** `count` rows saved in one transaction, `chunk` at a time. */
  @Post()
  @Audited('ctr.parts.imported')
  async import(@Body() body: { batch: string; count: number; chunk: number }): Promise<{ ok: true }> {
    await this.dataSource.transaction((manager) =>
      manager.save(
        CtrLine,
        Array.from({ length: body.count }, (_, n) => manager.create(CtrLine, { batch: body.batch, n })),
        { chunk: body.chunk },
      ),
    );
    return { ok: true };
  }
}

describe.each(databases())(`contract: the parts of a large unit at the bounds (maxChangesPerEvent ${PER_EVENT}), on %s`, (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [PartsController], audit: { maxChangesPerEvent: PER_EVENT } }, (app) => (t = app));

  // 50 is what a unit keeps in memory (five times maxChangesPerEvent); past it the journal holds the rest.
  it.each([
    [10, 5],
    [11, 5],
    [49, 5],
    [50, 5],
    [51, 5],
    [60, 5],
    [100, 5],
    [100, 50],
    [101, 7],
  ])('%i rows saved %i at a time: ceil(rows / maxChangesPerEvent) events, none empty, each row once', async (count, chunk) => {
    const batch = `b${count}-${chunk}`;
    const response = await t.request('/ctr-parts', { method: 'POST', json: { batch, count, chunk } });
    expect(response.status).toBe(201);
    const requestId = response.headers.get('x-request-id');
    const events = (await t.rows()).filter((row) => row.requestId === requestId);
    expect(events.every((row) => row.action === 'ctr.parts.imported' && row.kind === 'intent')).toBe(true);
    const sizes = events.map((row) => (row.changes ?? []).length);
    expect(sizes.length).toBe(Math.ceil(count / PER_EVENT));
    expect(sizes.every((size) => size >= 1 && size <= PER_EVENT)).toBe(true);
    const ids = events.flatMap((row) => (row.changes ?? []).map((change) => change.id));
    expect(new Set(ids).size).toBe(count);
    if (events.length > 1) {
      const first = events.find((row) => (row.context as { part?: { index: number } }).part?.index === 1)!;
      for (const row of events) expect(row.context).toMatchObject({ part: { count: events.length, first: first.id } });
    } else {
      expect((events[0]!.context as { part?: unknown } | null)?.part).toBeUndefined();
    }
    expect(await t.journal()).toBe(0);
  });
});
