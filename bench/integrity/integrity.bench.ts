import 'reflect-metadata';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { NestFactory } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AuditLogEntity, AuditService } from 'nestjs-system-audit';
import { canonicalEventJson } from '../../lib/integrity/canonical-json.js';
import { createSigner, formatCheckpoint, signNote } from '../../lib/integrity/checkpoint-note.js';
import { BATCH as INTEGRATOR_BATCH } from '../../lib/integrity/integrator.js';
import { DEFAULT_SEQUENCE_EVERY } from '../../lib/integrity/integrity-options.js';
import { appendLeaves, leafHash, type HashedNode } from '../../lib/integrity/merkle.js';
import { createBenchSchema, withClient, type BenchSchema } from '../support/postgres.js';
import { fixed, int, runConcurrently, sampleMemory, times } from '../support/stats.js';
import { auditInput, auditRow } from '../writer/audit-rows.js';
import { copyField, copyRows } from '../writer/writer-throughput.bench.js';
import { IntegrityBenchModule } from './integrity-bench.module.js';

export interface IntegrityOptions {
  /** Events stored with COPY, then sequenced by the integrator (`checkpoint()`). */
  integratorEvents: number;
  /** Events of the sequenced log (rows, tree and checkpoints written directly) that `verify()` checks. */
  verifyEvents: number;
  /** Seconds of `log()` at the writer's peak (4,096 in flight) with the integrator sequencing in the background. */
  sustainSeconds: number;
}

/** `log()` at the writer's peak for a while, the integrator at its default pace beside it. */
export interface SustainedResult {
  seconds: number;
  events: number;
  eventsPerSec: number;
  /** The integrator's pass interval (`sequenceEvery`, its default). */
  sequenceEvery: number;
  /** Events the integrator sequenced while the writer ran, per second. */
  integratorPerSec: number;
  /** Events without a seq when the writer stopped. */
  backlog: number;
  /** What may be left without falling behind: the events of one pass interval at the writer's rate, plus one batch. */
  allowedBacklog: number;
  /** `checkpoint()` sequencing the backlog afterwards, in seconds. */
  drainSeconds: number;
}

export interface IntegrityResult {
  options: IntegrityOptions;
  copySeconds: number;
  /** `checkpoint()` over every stored event: the integrator's batches (seq, leaves, tree nodes) and one signed checkpoint. */
  integrator: { seconds: number; eventsPerSec: number };
  sustained: SustainedResult;
  verify: { seconds: number; eventsPerSec: number; ok: boolean; problems: number; rssBeforeMb: number; rssPeakMb: number; heapPeakMb: number };
  /** `purge()` of the oldest half of the verified log, then `verify()` again. */
  purge: { seconds: number; deleted: number; throughSeq: number; eventsPerSec: number; verifySeconds: number; verifyOk: boolean; purgedThrough: number };
  problems: string[];
}

/**
 * On PostgreSQL: `integratorEvents` audit rows stored with COPY, then sequenced by the
 * integrator (`checkpoint()`: seq, leaf and tree nodes for each, a signed checkpoint);
 * and a sequenced log of `verifyEvents` checked end to end by `verify()` (every row
 * re-hashed against its leaf, every checkpoint's root recomputed), with the process's
 * memory sampled meanwhile; then `purge()` of the log's oldest half (a signed purge record,
 * batches of 5,000 deletes) and `verify()` once more.
 */
export async function runIntegrity(options: IntegrityOptions): Promise<IntegrityResult> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const problems: string[] = [];

  // The integrator: events stored, then sequenced.
  let integrator: IntegrityResult['integrator'];
  let copySeconds: number;
  {
    const schema = await createBenchSchema('integrator');
    const app = await NestFactory.createApplicationContext(IntegrityBenchModule.forRoot(schema.name, privateKey), { logger: ['error', 'warn'] });
    await app.init();
    try {
      const dataSource = app.get<DataSource>(getDataSourceToken());
      let started = performance.now();
      await copyRows(dataSource, schema, 0, options.integratorEvents);
      copySeconds = (performance.now() - started) / 1000;
      await schema.query(`ANALYZE ${schema.table('audit_log')}`);
      started = performance.now();
      const checkpoint = await app.get(AuditService).checkpoint();
      const seconds = (performance.now() - started) / 1000;
      if (checkpoint.treeSize !== options.integratorEvents) problems.push(`the checkpoint covers ${int(checkpoint.treeSize)} events, not ${int(options.integratorEvents)}`);
      integrator = { seconds, eventsPerSec: options.integratorEvents / seconds };
    } finally {
      await app.close();
      await schema.drop();
    }
  }

  const sustained = await runSustained(options.sustainSeconds, privateKey, problems);

  // verify(): a sequenced log of verifyEvents, written directly (rows with their seq, the tree, checkpoints).
  const schema = await createBenchSchema('verify');
  const app = await NestFactory.createApplicationContext(IntegrityBenchModule.forRoot(schema.name, privateKey), { logger: ['error', 'warn'] });
  await app.init();
  try {
    const dataSource = app.get<DataSource>(getDataSourceToken());
    const middle = await writeSequencedLog(dataSource, schema, options.verifyEvents, privateKey);
    const audit = app.get(AuditService);
    const memory = sampleMemory();
    const started = performance.now();
    const verified = await audit.verify();
    const verifySeconds = (performance.now() - started) / 1000;
    const peaks = memory.stop();
    if (!verified.ok) problems.push(`verify() found ${verified.problems.length} problems, e.g. ${JSON.stringify(verified.problems[0])}`);
    if (verified.treeSize !== options.verifyEvents) problems.push(`verify() checked a tree of ${int(verified.treeSize)} events, not ${int(options.verifyEvents)}`);

    // The oldest half purged (every event before the middle one's time), then verified again.
    const purgeStarted = performance.now();
    const purged = await audit.purge({ before: middle });
    const purgeSeconds = (performance.now() - purgeStarted) / 1000;
    const reverifyStarted = performance.now();
    const reverified = await audit.verify();
    const reverifySeconds = (performance.now() - reverifyStarted) / 1000;
    if (!reverified.ok) problems.push(`verify() after the purge found ${reverified.problems.length} problems, e.g. ${JSON.stringify(reverified.problems[0])}`);
    if (reverified.purgedThrough !== purged.throughSeq) problems.push(`verify() after the purge starts at ${reverified.purgedThrough}, the purge removed 1 to ${purged.throughSeq}`);
    if (purged.deleted < options.verifyEvents * 0.45) problems.push(`the purge removed ${int(purged.deleted)} events, not about half of ${int(options.verifyEvents)}`);
    return {
      options,
      copySeconds,
      integrator,
      sustained,
      verify: {
        seconds: verifySeconds,
        eventsPerSec: options.verifyEvents / verifySeconds,
        ok: verified.ok,
        problems: verified.problems.length,
        ...peaks,
      },
      purge: {
        seconds: purgeSeconds,
        deleted: purged.deleted,
        throughSeq: purged.throughSeq ?? 0,
        eventsPerSec: purged.deleted / purgeSeconds,
        verifySeconds: reverifySeconds,
        verifyOk: reverified.ok,
        purgedThrough: reverified.purgedThrough ?? 0,
      },
      problems,
    };
  } finally {
    await app.close();
    await schema.drop();
  }
}

/** Calls of `log()` in flight in the sustained run: the writer's peak in the writer scenario. */
const SUSTAIN_IN_FLIGHT = 4_096;

/**
 * Whether the integrator keeps up with the writer's peak: `log()` with 4,096 calls in flight
 * for `seconds` (at most 5,000,000 events), the integrator sequencing in the background at
 * its default pace, as in production. Then the events still without a seq, and the time
 * `checkpoint()` takes to sequence them.
 */
async function runSustained(seconds: number, key: KeyObject, problems: string[]): Promise<SustainedResult> {
  const schema = await createBenchSchema('sustained');
  const app = await NestFactory.createApplicationContext(IntegrityBenchModule.forRoot(schema.name, key, DEFAULT_SEQUENCE_EVERY), { logger: ['error', 'warn'] });
  await app.init();
  try {
    const audit = app.get(AuditService);
    const table = schema.table('audit_log');
    await runConcurrently(1_000, SUSTAIN_IN_FLIGHT, (i) => audit.log(auditInput(i)));
    await audit.checkpoint();
    let next = 1_000;
    const cap = 5_000_000;
    const started = performance.now();
    const deadline = started + seconds * 1000;
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline && next < cap) await audit.log(auditInput(next++));
    };
    await Promise.all(Array.from({ length: SUSTAIN_IN_FLIGHT }, worker));
    const elapsed = (performance.now() - started) / 1000;
    const events = next - 1_000;
    const backlog = Number((await schema.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE seq IS NULL`))[0]!.n);
    const draining = performance.now();
    const checkpoint = await audit.checkpoint();
    const drainSeconds = (performance.now() - draining) / 1000;
    if (checkpoint.treeSize !== next) problems.push(`sustained: the checkpoint covers ${int(checkpoint.treeSize)} events, not ${int(next)}`);
    const eventsPerSec = events / elapsed;
    return {
      seconds: elapsed,
      events,
      eventsPerSec,
      sequenceEvery: DEFAULT_SEQUENCE_EVERY,
      integratorPerSec: (events - backlog) / elapsed,
      backlog,
      allowedBacklog: Math.ceil((eventsPerSec * DEFAULT_SEQUENCE_EVERY) / 1000) + INTEGRATOR_BATCH,
      drainSeconds,
    };
  } finally {
    await app.close();
    await schema.drop();
  }
}

/** Checkpoints of the directly written log: four, the last at its full size. */
const CHECKPOINTS = 4;

/**
 * Writes a sequenced log as the integrator leaves it, in chunks and in constant memory:
 * the rows with their seq, every node of the Merkle tree, and signed checkpoints. Returns
 * the time of its middle event.
 */
async function writeSequencedLog(dataSource: DataSource, schema: BenchSchema, n: number, key: KeyObject): Promise<Date> {
  const origin = 'bench.nestjs-system-audit/integrity';
  const signer = createSigner(origin, key);
  const logColumns = dataSource.getMetadata(AuditLogEntity).columns;
  const logNames = logColumns.map((column) => `"${column.databaseName}"`).join(', ');
  const every = Math.ceil(n / CHECKPOINTS);
  let frontier: HashedNode[] = [];
  const notes: Array<{ size: number; root: Buffer; note: string }> = [];
  const CHUNK = 10_000;
  let middle = new Date();
  for (let start = 0; start < n; start += CHUNK) {
    const count = Math.min(CHUNK, n - start);
    let rows = '';
    let nodes = '';
    const leaves: Buffer[] = [];
    const ids: string[] = [];
    for (let i = start; i < start + count; i++) {
      const row = { ...auditRow(i), seq: i + 1 } as AuditLogEntity;
      if (i === Math.floor(n / 2)) middle = row.occurredAt;
      rows += logColumns.map((column) => copyField((row as unknown as Record<string, unknown>)[column.propertyName])).join('\t') + '\n';
      leaves.push(leafHash(Buffer.from(canonicalEventJson(row), 'utf8')));
      ids.push(row.id);
    }
    // Checkpoints fall inside chunks: append up to each one, then on.
    let done = 0;
    while (done < count) {
      const size = start + done;
      const nextCheckpoint = (Math.floor(size / every) + 1) * every;
      const take = Math.min(count - done, Math.min(nextCheckpoint, n) - size);
      const grown = appendLeaves(size, frontier, leaves.slice(done, done + take));
      for (const node of grown.nodes) nodes += `${node.level}\t${node.index}\t${node.hash.toString('hex')}\t${node.level === 0 ? ids[node.index - start] : '\\N'}\n`;
      frontier = grown.frontier;
      done += take;
      if (size + take === Math.min(nextCheckpoint, n)) {
        const treeSize = size + take;
        notes.push({ size: treeSize, root: grown.root, note: signNote(formatCheckpoint({ origin, treeSize, rootHash: grown.root }), signer) });
      }
    }
    await withClient(async (client) => {
      await pipeline(Readable.from([rows]), client.query(copyFrom(`COPY ${schema.table('audit_log')} (${logNames}) FROM STDIN`)));
      await pipeline(Readable.from([nodes]), client.query(copyFrom(`COPY ${schema.table('audit_tree')} ("level", "idx", "hash", "event_id") FROM STDIN`)));
    });
  }
  for (const { size, root, note } of notes) {
    await schema.query(`INSERT INTO ${schema.table('audit_checkpoint')} ("tree_size", "root_hash", "note", "created_at") VALUES ($1, $2, $3, now())`, [size, root.toString('hex'), note]);
  }
  await schema.query(`ANALYZE ${schema.table('audit_log')}`);
  await schema.query(`ANALYZE ${schema.table('audit_tree')}`);
  return middle;
}

/** `writerEventsPerSec`: the module writer's rate measured in the same run, when it ran. */
export function formatIntegrity(result: IntegrityResult, writerEventsPerSec?: number): string[] {
  const { integrator, verify } = result;
  const lines = [
    `Integrity on PostgreSQL (append-only triggers on):`,
    `  integrator: ${int(result.options.integratorEvents)} stored events (COPY, ${fixed(result.copySeconds, 1)} s) sequenced by checkpoint() — seq, leaf and tree nodes per event, one transaction per 2,000, one signed checkpoint: ${int(integrator.eventsPerSec)} events/s (${fixed(integrator.seconds, 1)} s)`,
  ];
  if (writerEventsPerSec !== undefined) {
    const ratio = integrator.eventsPerSec / writerEventsPerSec;
    lines.push(`  integrator / module writer's peak (${int(writerEventsPerSec)} events/s, this run): ${times(ratio)} — ${ratio >= 1 ? 'keeps up' : 'FALLS BEHIND under a sustained peak'}`);
  }
  const { sustained } = result;
  const keptUp = sustained.backlog <= sustained.allowedBacklog;
  lines.push(
    `  sustained: log() with ${int(SUSTAIN_IN_FLIGHT)} in flight for ${fixed(sustained.seconds, 1)} s, the integrator in the background (a pass every ${int(sustained.sequenceEvery)} ms): ` +
      `writer ${int(sustained.eventsPerSec)} events/s, integrator ${int(sustained.integratorPerSec)} events/s beside it; ` +
      `${int(sustained.backlog)} of ${int(sustained.events)} events without a seq when the writer stopped (up to ${int(sustained.allowedBacklog)} is keeping up: one pass interval's events and a batch), ` +
      `sequenced in ${fixed(sustained.drainSeconds, 2)} s after it — ${keptUp ? 'keeps up' : 'FALLS BEHIND'}`,
  );
  lines.push(
    `  verify() of a sequenced log of ${int(result.options.verifyEvents)} events (${CHECKPOINTS} checkpoints): ${fixed(verify.seconds, 1)} s, ${int(verify.eventsPerSec)} events/s, ${verify.ok ? 'ok' : `${verify.problems} problems`}; ` +
      `RSS ${int(verify.rssBeforeMb)} MB before, peak ${int(verify.rssPeakMb)} MB (+${int(verify.rssPeakMb - verify.rssBeforeMb)} MB); heap peak ${int(verify.heapPeakMb)} MB`,
  );
  const { purge } = result;
  lines.push(
    `  purge() of the oldest half (events 1 to ${int(purge.throughSeq)}, a signed purge record, batches of 5,000): ${int(purge.deleted)} events in ${fixed(purge.seconds, 1)} s (${int(purge.eventsPerSec)} events/s); ` +
      `verify() after it: ${fixed(purge.verifySeconds, 1)} s, ${purge.verifyOk ? 'ok' : 'PROBLEMS'} (purged through ${int(purge.purgedThrough)})`,
  );
  for (const problem of result.problems) lines.push(`  !! ${problem}`);
  return lines;
}
