import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { CtrDoc, contractAppFor, type ContractApp } from './contract-app.js';

const MAX_EVENT_BYTES = 524_288;

/** A row with ten long text fields. */
@Entity('ctr_wide')
class CtrWide {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' }) f0!: string;
  @Column({ type: 'text' }) f1!: string;
  @Column({ type: 'text' }) f2!: string;
  @Column({ type: 'text' }) f3!: string;
  @Column({ type: 'text' }) f4!: string;
  @Column({ type: 'text' }) f5!: string;
  @Column({ type: 'text' }) f6!: string;
  @Column({ type: 'text' }) f7!: string;
  @Column({ type: 'text' }) f8!: string;
  @Column({ type: 'text' }) f9!: string;
}

@Controller('ctr-bytes')
class EventBytesController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** `count` documents of `length` copies of `unit`, in one transaction. */
  @Post('docs')
  @Audited('ctr.bytes.docs')
  async docs(@Body() body: { count: number; unit: string; length: number }): Promise<{ ok: true }> {
    await this.dataSource.transaction((manager) =>
      manager.save(
        CtrDoc,
        Array.from({ length: body.count }, (_, n) => manager.create(CtrDoc, { body: `${n}:${body.unit.repeat(body.length)}` })),
      ),
    );
    return { ok: true };
  }

  /** One row whose change alone is past maxEventBytes. */
  @Post('wide')
  @Audited('ctr.bytes.wide')
  async wide(): Promise<{ id: number }> {
    const value = 'w'.repeat(60_000);
    const fields = Object.fromEntries(Array.from({ length: 10 }, (_, n) => [`f${n}`, value]));
    const row = await this.dataSource.getRepository(CtrWide).save(fields);
    return { id: row.id };
  }
}

describe.each(databases())('contract: events bounded by maxEventBytes, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [EventBytesController], entities: [CtrWide] }, (app) => (t = app));

  it.each([
    ['ASCII', 'a', 60_000, 12],
    ['three-byte UTF-8 (€)', '€', 20_000, 20],
  ])('a unit whose changes are past maxEventBytes (%s): several parts, each at most maxEventBytes of JSON, every document whole and once', { timeout: 60_000 }, async (_, unit, length, count) => {
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-bytes/docs', { method: 'POST', json: { count, unit, length } });
    expect(response.status).toBe(201);
    const parts = (await t.rows()).slice(before).filter((row) => row.action === 'ctr.bytes.docs');
    expect(parts.length).toBeGreaterThan(1);
    for (const part of parts) {
      expect(part.context).toMatchObject({ part: { count: parts.length } });
      expect(Buffer.byteLength(JSON.stringify(part.changes), 'utf8')).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    }
    const bodies = parts.flatMap((part) => (part.changes ?? []).map((change) => (change.fields['body'] as { to: string }).to));
    expect(bodies.sort()).toEqual(Array.from({ length: count }, (__, n) => `${n}:${unit.repeat(length)}`).sort());
    expect(await t.journal()).toBe(0);
  });

  it('a single change past maxEventBytes: its field names kept, values replaced by size markers, partial', async () => {
    const response = await t.request('/ctr-bytes/wide', { method: 'POST' });
    expect(response.status).toBe(201);
    const { id } = (await response.json()) as { id: number };
    const rows = (await t.rows()).filter((row) => row.action === 'ctr.bytes.wide');
    expect(rows).toHaveLength(1);
    const [change] = rows[0]!.changes ?? [];
    expect(change).toMatchObject({ entity: 'CtrWide', id: String(id), operation: 'insert', partial: true });
    expect(Object.keys(change!.fields).sort()).toEqual(['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9', 'id'].sort());
    expect(JSON.stringify(change!.fields)).toMatch(/\[too large: \d+ bytes\]/);
    expect(Buffer.byteLength(JSON.stringify(rows[0]!.changes), 'utf8')).toBeLessThanOrEqual(MAX_EVENT_BYTES);
  });
});
