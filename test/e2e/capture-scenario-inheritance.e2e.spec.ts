import { describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { captureApp } from '../app/capture-harness.js';
import { CPS_STI_ENTITIES, CpsContent, CpsRemark, CpsTopic, CpsVideo, CpsVideoNote } from '../app/capture-scenario/cps-sti-entities.js';
import { databases } from '../support/test-database.js';

const keyOf = (c: AuditChange) => `${c.entity}:${c.id}:${c.operation}`;

/** Rows of a single-table-inheritance child: their links and what the database removes with them are recorded under the child, whichever repository writes them. */
describe.each(databases())('capture of single-table-inheritance rows on %s', (kind) => {
  const h = captureApp(kind, CPS_STI_ENTITIES);
  let serial = 0;

  async function inHandler(fn: () => Promise<unknown>): Promise<AuditChange[]> {
    const result = await h.run('handler', fn);
    expect(result.status).toBe(201);
    const rows = await h.t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}:${row.outcome}`)).toEqual(['intent:edge.run:success']);
    return rows[0]!.changes ?? [];
  }

  async function video() {
    const topic = await h.t.seed(() => h.ds.getRepository(CpsTopic).save({ name: `t${++serial}` }));
    const v = await h.t.seed(() => h.ds.getRepository(CpsVideo).save({ title: `v${++serial}`, seconds: 10, topics: [topic] }));
    const remark = await h.t.seed(() => h.ds.getRepository(CpsRemark).save({ text: 'nice', content: v }));
    const note = await h.t.seed(() => h.ds.getRepository(CpsVideoNote).save({ text: 'at 0:05', video: v }));
    return { topic, v, remark, note };
  }

  function expectRemoved(changes: AuditChange[], { topic, v, remark, note }: Awaited<ReturnType<typeof video>>): void {
    expect(changes.map(keyOf).sort(), JSON.stringify(changes)).toEqual([`CpsRemark:${remark.id}:delete`, `CpsVideo:${v.id}:delete`, `CpsVideoNote:${note.id}:delete`].sort());
    expect(changes.find((c) => c.entity === 'CpsVideo')!.fields['topics']).toEqual({ added: [], removed: [String(topic.id)] });
  }

  it('deleting a video by id through the child repository records its remarks, notes and topic links', async () => {
    const n = await video();
    const changes = await inHandler(() => h.ds.getRepository(CpsVideo).delete(n.v.id));
    expect(await h.ds.getRepository(CpsRemark).countBy({ id: n.remark.id })).toBe(0);
    expectRemoved(changes, n);
  });

  it('deleting a video by id through the base repository records the same', async () => {
    const n = await video();
    const changes = await inHandler(() => h.ds.getRepository(CpsContent).delete(n.v.id));
    expectRemoved(changes, n);
  });

  it('removing a loaded video records the same', async () => {
    const n = await video();
    const changes = await inHandler(async () => h.ds.getRepository(CpsVideo).remove(await h.ds.getRepository(CpsVideo).findOneByOrFail({ id: n.v.id })));
    expectRemoved(changes, n);
  });
  it('a video inserted with a topic is one insert of the video with its link', async () => {
    const topic = await h.t.seed(() => h.ds.getRepository(CpsTopic).save({ name: `t${++serial}` }));
    let id = 0;
    const changes = await inHandler(async () => {
      id = (await h.ds.getRepository(CpsVideo).save({ title: `v${++serial}`, seconds: 3, topics: [topic] })).id;
    });
    expect(changes.map(keyOf), JSON.stringify(changes)).toEqual([`CpsVideo:${id}:insert`]);
    expect(changes[0]!.fields['topics']).toEqual({ added: [String(topic.id)], removed: [] });
  });

  it('a video’s topics changed by save are one update of the video', async () => {
    const n = await video();
    const other = await h.t.seed(() => h.ds.getRepository(CpsTopic).save({ name: `t${++serial}` }));
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsVideo).findOneOrFail({ where: { id: n.v.id }, relations: { topics: true } });
      loaded.topics = [other];
      loaded.seconds = 20;
      await h.ds.getRepository(CpsVideo).save(loaded);
    });
    expect(changes, JSON.stringify(changes)).toEqual([
      { entity: 'CpsVideo', id: String(n.v.id), operation: 'update', fields: { seconds: { from: 10, to: 20 }, topics: { added: [String(other.id)], removed: [String(n.topic.id)] } } },
    ]);
  });
});
