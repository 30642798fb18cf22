// A design experiment, not a benchmark of the module: what PostgreSQL spends to give
// stored events their `seq`, as the integrator does it (an UPDATE of each `audit_log`
// row) against keeping the seq beside the row (a narrow queue of unsequenced event ids,
// filled with the events and emptied by the integrator, the seq living in the leaf row of
// `audit_tree`, looked up by event id through an index of its own). Both on the tables
// the module's migrations create, with rows of the writer benchmark's shape (COPY), in
// the integrator's batch size, alternating the layouts over fresh schemas. The leaf
// INSERT itself, which every layout makes, is left out of all.
//
// A third layout keeps the `seq` column in the row but no index on it (the seq-to-event
// lookup and the unsequenced ids in tables of their own, as in the queue layout), with
// the table's fillfactor at 50: PostgreSQL can then update each row in place (a
// heap-only tuple: a new row version on the same page and no index entry), which an
// index naming `seq` (its columns or its predicate) rules out.
//
//   npm run build && node --import ./bench/support/register.mjs bench/integrity/seq-layout.experiment.ts
//
// SEQ_LAYOUT_EVENTS (default 100,000) and SEQ_LAYOUT_ROUNDS (default 2) size it.
import 'reflect-metadata';
import { performance } from 'node:perf_hooks';
import { DataSource } from 'typeorm';
import { AuditEntities, AuditMigrations } from 'nestjs-system-audit';
import { BATCH } from '../../lib/integrity/integrator.js';
import { createBenchSchema, postgresConnection, withClient, type BenchSchema } from '../support/postgres.js';
import { fixed, int } from '../support/stats.js';
import { copyRows } from '../writer/writer-throughput.bench.js';

const EVENTS = Number(process.env['SEQ_LAYOUT_EVENTS'] ?? '') || 100_000;
const ROUNDS = Number(process.env['SEQ_LAYOUT_ROUNDS'] ?? '') || 2;
/** Rows per writer statement that adds the events' ids to the queue (the writer's batches are of this order at its peak). */
const WRITER_BATCH = 500;

type Layout = 'update' | 'queue' | 'hot';

interface Timing {
  /** ms the writer's side adds per `EVENTS` (nothing for the UPDATE layout). */
  write: number;
  /** ms the integrator's side spends per `EVENTS`. */
  sequence: number;
}

async function measure(layout: Layout): Promise<Timing> {
  const schema = await createBenchSchema(`seq_${layout}`);
  try {
    const dataSource = new DataSource({ ...postgresConnection(schema.name), entities: [...AuditEntities], migrations: AuditMigrations, migrationsRun: true });
    await dataSource.initialize();
    try {
      if (layout === 'hot') {
        await dataSource.query(`DROP INDEX "${schema.name}"."idx_audit_log_seq"`);
        await dataSource.query(`DROP INDEX IF EXISTS "${schema.name}"."idx_audit_log_unsequenced"`);
        await dataSource.query(`ALTER TABLE ${schema.table('audit_log')} SET (fillfactor = 50)`);
      }
      await copyRows(dataSource, schema, 0, EVENTS);
    } finally {
      await dataSource.destroy();
    }
    return await withClient(async (client) => {
      await client.query(`VACUUM ANALYZE ${schema.table('audit_log')}`);
      const ids = (await client.query<{ id: string }>(`SELECT id FROM ${schema.table('audit_log')} ORDER BY id`)).rows.map((row) => row.id);
      if (layout === 'update') return await sequenceByUpdate(client, schema, ids);
      const timing = await sequenceByQueue(client, schema, ids, layout === 'hot');
      if (layout === 'hot') {
        await client.query('SELECT pg_stat_force_next_flush()');
        const stats = (
          await client.query<{ hot: string; updated: string }>(`SELECT n_tup_hot_upd AS hot, n_tup_upd AS updated FROM pg_stat_user_tables WHERE relid = $1::regclass`, [schema.table('audit_log')])
        ).rows[0];
        console.log(`    (${int(Number(stats?.hot))} of ${int(Number(stats?.updated))} row updates heap-only)`);
      }
      return timing;
    });
  } finally {
    await schema.drop();
  }
}

type Client = Parameters<Parameters<typeof withClient>[0]>[0];

/** Today's integrator statement, batch by batch, each in its own transaction. */
async function sequenceByUpdate(client: Client, schema: BenchSchema, ids: string[]): Promise<Timing> {
  const table = schema.table('audit_log');
  const started = performance.now();
  for (let i = 0; i < ids.length; i += BATCH) {
    const batch = ids.slice(i, i + BATCH);
    await client.query('BEGIN');
    const result = await client.query(
      `UPDATE ${table} SET "seq" = v.seq FROM (SELECT unnest($1::uuid[]) AS id, unnest($2::bigint[]) AS seq) AS v WHERE ${table}."id" = v.id AND ${table}."seq" IS NULL`,
      [batch, batch.map((_, j) => i + j + 1)],
    );
    if (result.rowCount !== batch.length) throw new Error(`sequenced ${result.rowCount} of ${batch.length}`);
    await client.query('COMMIT');
  }
  return { write: 0, sequence: performance.now() - started };
}

/**
 * The seq beside the row: the writer adds each event's id to `audit_pending`; the
 * integrator deletes a batch of them and records each event's seq with its leaf (here
 * only the index on the leaves' event id that the layout would add is filled, with the
 * leaf rows a separate table holds, so that the shared leaf INSERT is not counted).
 */
async function sequenceByQueue(client: Client, schema: BenchSchema, ids: string[], updateInPlace = false): Promise<Timing> {
  const table = schema.table('audit_log');
  const pending = schema.table('audit_pending');
  const seqs = schema.table('audit_seq_by_event');
  await client.query(`CREATE TABLE ${pending} (id uuid PRIMARY KEY)`);
  await client.query(`CREATE TABLE ${seqs} (seq bigint PRIMARY KEY, event_id uuid NOT NULL)`);
  await client.query(`CREATE UNIQUE INDEX ON ${seqs} (event_id)`);
  let started = performance.now();
  for (let i = 0; i < ids.length; i += WRITER_BATCH) {
    await client.query(`INSERT INTO ${pending} (id) SELECT unnest($1::uuid[])`, [ids.slice(i, i + WRITER_BATCH)]);
  }
  const write = performance.now() - started;
  await client.query(`VACUUM ANALYZE ${pending}`);
  // The leaf rows' own INSERT (both layouts) into a table without the event-id index, to subtract it.
  await client.query(`CREATE TABLE ${schema.table('leaf_only')} (seq bigint PRIMARY KEY, event_id uuid NOT NULL)`);
  let leafOnly = 0;
  started = performance.now();
  for (let i = 0; i < ids.length; i += BATCH) {
    const batch = ids.slice(i, i + BATCH);
    const seqList = batch.map((_, j) => i + j + 1);
    await client.query('BEGIN');
    const deleted = await client.query(`DELETE FROM ${pending} WHERE id = ANY($1::uuid[])`, [batch]);
    if (deleted.rowCount !== batch.length) throw new Error(`dequeued ${deleted.rowCount} of ${batch.length}`);
    await client.query(`INSERT INTO ${seqs} (seq, event_id) SELECT * FROM unnest($1::bigint[], $2::uuid[])`, [seqList, batch]);
    if (updateInPlace) {
      const result = await client.query(
        `UPDATE ${table} SET "seq" = v.seq FROM (SELECT unnest($1::uuid[]) AS id, unnest($2::bigint[]) AS seq) AS v WHERE ${table}."id" = v.id AND ${table}."seq" IS NULL`,
        [batch, seqList],
      );
      if (result.rowCount !== batch.length) throw new Error(`sequenced ${result.rowCount} of ${batch.length}`);
    }
    await client.query('COMMIT');
    const leafStarted = performance.now();
    await client.query(`INSERT INTO ${schema.table('leaf_only')} (seq, event_id) SELECT * FROM unnest($1::bigint[], $2::uuid[])`, [seqList, batch]);
    leafOnly += performance.now() - leafStarted;
  }
  return { write, sequence: performance.now() - started - 2 * leafOnly };
}

console.log(`seq layouts on PostgreSQL: ${int(EVENTS)} events, integrator batches of ${int(BATCH)}, ${ROUNDS} rounds (alternating order)`);
const runs: Record<Layout, Timing[]> = { update: [], queue: [], hot: [] };
for (let round = 0; round < ROUNDS; round++) {
  const order: Layout[] = round % 2 === 0 ? ['update', 'queue', 'hot'] : ['hot', 'queue', 'update'];
  for (const layout of order) {
    const timing = await measure(layout);
    runs[layout].push(timing);
    console.log(`  round ${round + 1} ${layout.padEnd(6)}  writer side ${fixed(timing.write, 0).padStart(6)} ms  integrator side ${fixed(timing.sequence, 0).padStart(6)} ms`);
  }
}
const mean = (values: number[]): number => values.reduce((sum, value) => sum + value, 0) / values.length;
const perEvent = (ms: number): string => `${fixed((ms * 1000) / EVENTS, 1)} µs/event`;
const update = mean(runs.update.map((t) => t.sequence));
const queue = mean(runs.queue.map((t) => t.write + t.sequence));
console.log(`  UPDATE of audit_log.seq: ${perEvent(update)}; queue + seq beside the row: ${perEvent(queue)} (writer ${perEvent(mean(runs.queue.map((t) => t.write)))}, integrator ${perEvent(mean(runs.queue.map((t) => t.sequence)))})`);
console.log(`  the UPDATE costs ${fixed(update / queue, 1)}× the queue in PostgreSQL's time`);
const hot = mean(runs.hot.map((t) => t.write + t.sequence));
console.log(`  queue + seq beside the row + an in-place UPDATE of audit_log.seq (no index on it, fillfactor 50): ${perEvent(hot)}; the UPDATE of today costs ${fixed(update / hot, 1)}× that`);
