// Many-to-many links of a single-table-inheritance base removed by one criteria delete on
// the junction, for more rows than one OR chain of SQL conditions can hold: each link is
// still recorded on the child it belongs to.
import { describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { captureApp } from '../app/capture-harness.js';
import { CPS_STI_ENTITIES, CpsTopic, CpsVideo } from '../app/capture-scenario/cps-sti-entities.js';
import { databases } from '../support/test-database.js';

const LINKS = 1_500;

describe.each(databases())('links of many single-table-inheritance rows removed at once on %s', (kind) => {
  const h = captureApp(kind, CPS_STI_ENTITIES);

  /** A topic linked to `count` new videos. */
  async function linkedTopic(count: number): Promise<CpsTopic> {
    const LINKS = count;
    const topic = await h.t.seed(() => h.ds.getRepository(CpsTopic).save({ name: 'chk-topic' }));
    const videos: CpsVideo[] = [];
    await h.t.seed(async () => {
      for (let from = 0; from < LINKS; from += 250) {
        const batch = Array.from({ length: Math.min(250, LINKS - from) }, (_, i) => h.ds.getRepository(CpsVideo).create({ title: `v${from + i}`, seconds: 1 }));
        videos.push(...(await h.ds.getRepository(CpsVideo).save(batch)));
      }
      const junction = h.ds.getMetadata(CpsVideo).relations.find((r) => r.propertyName === 'topics')!.junctionEntityMetadata!;
      const [content, topicColumn] = [junction.ownerColumns[0]!.databaseName, junction.inverseColumns[0]!.databaseName];
      for (let from = 0; from < LINKS; from += 250) {
        await h.ds
          .createQueryBuilder()
          .insert()
          .into(junction.tableName, [content, topicColumn])
          .values(videos.slice(from, from + 250).map((v) => ({ [content]: v.id, [topicColumn]: topic.id })))
          .execute();
      }
    });
    await h.t.clearAudit();
    return topic;
  }

  it(`a criteria delete of ${LINKS} junction rows records ${LINKS} link removals`, async () => {
    const topic = await linkedTopic(LINKS);
    const junction = h.ds.getMetadata(CpsVideo).relations.find((r) => r.propertyName === 'topics')!.junctionEntityMetadata!;
    const topicColumn = junction.inverseColumns[0]!.databaseName;
    const result = await h.run('handler', () =>
      h.ds.createQueryBuilder().delete().from(junction.target).where(`${h.ds.driver.escape(topicColumn)} = :id`, { id: topic.id }).execute(),
    );
    expect(result.status).toBe(201);
    const rows = await h.t.rows();
    const changes: AuditChange[] = rows.flatMap((row) => row.changes ?? []);
    expect(changes.filter((c) => c.partial), JSON.stringify(changes.filter((c) => c.partial))).toEqual([]);
    expect(changes.filter((c) => c.entity === 'CpsVideo' && c.operation === 'update').length).toBe(LINKS);
  });

  it('deleting a topic linked to 1,000 videos (the default maxCriteriaRows) records 1,000 link removals', async () => {
    const topic = await linkedTopic(1_000);
    const result = await h.run('handler', () => h.ds.getRepository(CpsTopic).delete(topic.id));
    expect(result.status).toBe(201);
    const changes: AuditChange[] = (await h.t.rows()).flatMap((row) => row.changes ?? []);
    expect(changes.filter((c) => c.partial), JSON.stringify(changes.filter((c) => c.partial))).toEqual([]);
    expect(changes.filter((c) => c.entity === 'CpsVideo' && c.operation === 'update').length, JSON.stringify(changes).slice(0, 600)).toBe(1_000);
  });
});
