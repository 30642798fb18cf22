import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { changesOf, CtrItem, contractAppFor, type ContractApp } from './contract-app.js';

/**
 * `log()` outside any unit of work but inside `dataSource.transaction()`: written in that
 * transaction when it commits, claiming its target's changes there; rolled back with it.
 */
describe.each(databases())('contract: log() in a transaction outside any unit of work, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, {}, (app) => (t = app));

  it('the transaction throws: no event at all, no row', async () => {
    const before = (await t.rows()).length;
    await expect(
      t.dataSource.transaction(async (manager) => {
        const item = await manager.save(CtrItem, manager.create(CtrItem, { name: 'log-rollback' }));
        await t.audit.log({ action: 'ctr.manual.rolled', target: item, reason: 'never' });
        throw new Error('script failed');
      }),
    ).rejects.toThrow('script failed');
    expect(await t.dataSource.getRepository(CtrItem).countBy({ name: 'log-rollback' })).toBe(0);
    expect((await t.rows()).slice(before)).toEqual([]);
    expect(await t.journal()).toBe(0);
  });

  it('the transaction commits: exactly one event, the intent, claiming its target’s insert (no fallback row)', async () => {
    const before = (await t.rows()).length;
    const item = await t.dataSource.transaction(async (manager) => {
      const saved = await manager.save(CtrItem, manager.create(CtrItem, { name: 'log-commit' }));
      await t.audit.log({ action: 'ctr.manual.committed', target: saved, reason: 'script' });
      saved.status = 'done';
      await manager.save(CtrItem, saved); // after the call: claimed too
      return saved;
    });
    const rows = (await t.rows()).slice(before);
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['ctr.manual.committed', 'intent', 'success']]);
    const [event] = rows;
    expect([event!.targetType, event!.targetId, event!.reason, event!.actorType]).toEqual(['CtrItem', String(item.id), 'script', 'system']);
    expect(changesOf(rows, 'CtrItem')).toEqual([
      expect.objectContaining({ id: String(item.id), operation: 'insert', fields: expect.objectContaining({ name: { from: null, to: 'log-commit' }, status: { from: null, to: 'done' } }) }),
    ]);
    expect(await t.journal()).toBe(0);
  });

  it('a log() given before the write it targets, and another instance changed beside it: one intent with its target, one fallback for the other', async () => {
    const before = (await t.rows()).length;
    const [first, second] = await t.dataSource.transaction(async (manager) => {
      const a = await manager.save(CtrItem, manager.create(CtrItem, { name: 'log-first' }));
      await t.audit.log({ action: 'ctr.manual.first', target: { type: 'CtrItem', id: a.id } });
      a.status = 'moved';
      await manager.save(CtrItem, a);
      const b = await manager.save(CtrItem, manager.create(CtrItem, { name: 'log-other' }));
      return [a, b] as const;
    });
    const rows = (await t.rows()).slice(before);
    expect(rows.map((row) => [row.action, row.kind]).sort()).toEqual([
      ['ctr.manual.first', 'intent'],
      ['ctrItem.created', 'change'],
    ]);
    const intent = rows.find((row) => row.kind === 'intent')!;
    expect((intent.changes ?? []).map((change) => change.id)).toEqual([String(first.id)]);
    const fallback = rows.find((row) => row.kind === 'change')!;
    expect([fallback.targetType, fallback.targetId]).toEqual(['CtrItem', String(second.id)]);
    expect(changesOf(rows, 'CtrItem')).toHaveLength(2);
  });
});
