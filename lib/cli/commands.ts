import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { DataSource } from 'typeorm';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import { verifierKey } from '../integrity/checkpoint-note.js';
import { inclusionProofOf, latestCheckpoint } from '../integrity/stored-proofs.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { bindUtcDates } from '../storage/utc-date.transformer.js';
import { DatabaseLogSource, withUnsequencedProblems } from '../integrity/database-log-source.js';
import { formatCheckpointsFile, readCheckpointsFile } from '../integrity/file-anchor.js';
import { exportLogData, findExportedEvent } from '../integrity/jsonl-log-source.js';
import { mergeCheckpoints, verifyLog } from '../integrity/log-verifier.js';
import { checkInclusion, type AuditInclusionProofWithNote } from '../integrity/proofs.js';
import { splitPurgeNotes } from '../integrity/purge-record.js';
import type { AuditOutcome, AuditTarget } from '../interfaces/audit-event.interface.js';
import type { AuditInclusionProof, AuditIntegrityProblem, AuditVerifyResult } from '../interfaces/audit-integrity.interface.js';
import type { AuditExportQuery } from '../interfaces/audit-service.interface.js';
import { exportHeader, exportRecords } from '../read/audit-export.js';
import { AUDIT_OUTCOMES, filtersAnything, parseIsoInstant, whereAuditQuery } from '../read/audit-query.js';
import { DatabaseUnavailableError, openDatabase, refuseOutputOverDatabase, type DatabaseArguments } from './database.js';
import { readPublicKeys } from './keys.js';
import { openOutput, type CliIo } from './output.js';
import { CliUsageError } from './usage-error.js';

/** The options a command reads (all strings, `public-key` repeated). */
export interface CommandOptions {
  url?: string;
  schema?: string;
  'table-prefix'?: string;
  'public-key'?: string[];
  checkpoints?: string;
  events?: string;
  out?: string;
  name?: string;
  format?: string;
  since?: string;
  until?: string;
  actor?: string;
  'actor-type'?: string;
  action?: string[];
  target?: string;
  source?: string;
  outcome?: string;
}

/** `verify`: the whole log against its tree and checkpoints; exit 0 when sound, 1 on problems. */
export async function verifyCommand(options: CommandOptions, io: CliIo): Promise<number> {
  // Without a key everything but the signatures is checked, and the output says so.
  const checkSignatures = options['public-key'] !== undefined && options['public-key'].length > 0;
  const publicKeys = checkSignatures ? readPublicKeys(options['public-key']) : [];
  if (!checkSignatures) io.stderr.write(`${NO_KEY_WARNING}\n`);
  // A checkpoints file may hold purge records too (the anchor gets them).
  const { checkpoints: external, purges } = splitPurgeNotes(options.checkpoints === undefined ? [] : await readNotes(options.checkpoints));
  let result: AuditVerifyResult;
  if (options.events !== undefined) {
    if (options.url !== undefined) throw new CliUsageError('give either --url or --events, not both');
    if (options.checkpoints === undefined) throw new CliUsageError('an export is checked against its checkpoints: add --checkpoints <file>');
    const progress = progressLine(io.stderr);
    result = await verifyLog({ ...exportLogData(options.events, external), purges, publicKeys, checkSignatures, onProgress: progress.update });
    progress.done();
  } else {
    result = await withDatabase(options, async (dataSource) => {
      const source = new DatabaseLogSource(dataSource);
      // The purge records first: each was signed over a tree the bound read next reaches.
      const stored = await source.purgeNotes();
      const bound = await source.treeBound();
      const data = source.dataUpTo(bound);
      const total = await source.countEvents(bound);
      const progress = progressLine(io.stderr);
      const verified = await verifyLog({
        ...data,
        checkpoints: mergeCheckpoints(data.checkpoints, external),
        purges: [...stored, ...purges],
        publicKeys,
        checkSignatures,
        total,
        onProgress: progress.update,
      });
      progress.done();
      return withUnsequencedProblems(verified, source);
    });
  }
  for (const problem of result.problems) io.stdout.write(`${formatProblem(problem)}\n`);
  io.stdout.write(`${summary(result)}\n`);
  return result.ok ? 0 : 1;
}

/** `verify-proof`: an inclusion proof's own check, and with data, that the event in it hashes to the proof's leaf. */
export async function verifyProofCommand(file: string | undefined, options: CommandOptions, io: CliIo): Promise<number> {
  if (file === undefined) throw new CliUsageError('name the proof file: verify-proof <proof.json>');
  const publicKeys = readPublicKeys(options['public-key']);
  let proof: AuditInclusionProof | AuditInclusionProofWithNote;
  try {
    proof = JSON.parse(readFileSync(file, 'utf8')) as AuditInclusionProof | AuditInclusionProofWithNote;
  } catch (err) {
    throw new CliUsageError(`cannot read the proof ${file}: ${(err as Error).message}`);
  }
  const own = checkInclusion(proof, publicKeys);
  if (!own.ok) return fail(io, own.reason);
  let where = '';
  if (options.url !== undefined && options.events !== undefined) throw new CliUsageError('give either --url or --events, not both');
  if (options.url !== undefined) {
    const found = await withDatabase(options, (dataSource) => new DatabaseLogSource(dataSource).findEvent(proof.id));
    if (!found) return fail(io, `event ${proof.id} is not in the database`);
    const { row, problem } = found;
    if (problem !== undefined) return fail(io, `the database's copy of event ${proof.id}: ${problem}`);
    if (row.seq !== proof.seq) return fail(io, `event ${proof.id} has seq ${row.seq ?? 'null'} in the database, the proof says ${proof.seq}`);
    const withEvent = checkInclusion(proof, publicKeys, row);
    if (!withEvent.ok) return fail(io, `the database's copy of event ${proof.id}: ${withEvent.reason}`);
    where = ', and the database holds it unchanged';
  } else if (options.events !== undefined) {
    const found = await findExportedEvent(options.events, proof.id);
    if (!found) return fail(io, `event ${proof.id} is not in ${options.events}`);
    if (found.seq !== proof.seq) return fail(io, `event ${proof.id} has seq ${found.seq} in ${options.events}, the proof says ${proof.seq}`);
    if (!found.leafHash.equals(Buffer.from(proof.leafHash, 'base64'))) {
      return fail(io, `the export's copy of event ${proof.id} does not hash to the proof's leaf hash (it was changed)`);
    }
    where = `, and ${options.events} holds it unchanged`;
  }
  io.stdout.write(`OK: event ${proof.id} (seq ${proof.seq}) is in the signed tree of size ${proof.treeSize}${where}\n`);
  return 0;
}

/**
 * `export`: the events matching the filters, as JSON Lines (default) or CSV. With no
 * filter, JSON Lines holds the whole trail ascending by seq (what `verify --events`
 * checks), then the events not sequenced yet (`"seq":null`); otherwise ascending
 * `(occurredAt, id)`.
 */
export async function exportCommand(options: CommandOptions, io: CliIo): Promise<number> {
  const format = options.format ?? 'jsonl';
  if (format !== 'jsonl' && format !== 'csv') throw new CliUsageError(`--format must be jsonl or csv, got ${JSON.stringify(format)}`);
  const query = exportQuery(options);
  let skipped = 0;
  const count = await withDatabase(options, async (dataSource) => {
    bindUtcDates(dataSource);
    const qb = dataSource.getRepository(AuditLogEntity).createQueryBuilder('e');
    whereAuditQuery(qb, query, { dataSource, resolveTarget: (target) => target as AuditTarget });
    const order = format === 'jsonl' && !filtersAnything(query) ? 'seq' : 'time';
    const output = openOutput(options.out, io.stdout);
    const progress = exportProgress(io.stderr);
    let n = 0;
    let chunk = exportHeader(format);
    const records = exportRecords({ dataSource, query: qb, order, format }, (event) => {
      skipped++;
      io.stderr.write(`nestjs-system-audit export: event ${event.id}${event.seq === null ? '' : ` (seq ${event.seq})`} left out: ${oneLine(event.reason)}\n`);
    });
    for await (const record of records) {
      chunk += record;
      if (++n % 1000 === 0) {
        await output.write(chunk);
        chunk = '';
        progress.update(n);
      }
    }
    await output.write(chunk);
    await output.close();
    progress.done(n);
    return n;
  });
  if (options.out !== undefined) io.stderr.write(`exported ${plural(count, 'event')} to ${options.out}\n`);
  if (skipped === 0) return 0;
  // The rest is written; the export is not the whole of what was asked for.
  io.stderr.write(`nestjs-system-audit export: ${plural(skipped, 'event')} left out (its row cannot be written as stored; verify reports it)\n`);
  return 2;
}

/** Text on one line (a reason quoting stored text may hold line breaks). */
const oneLine = (text: string): string => text.replace(/[\r\n]+/g, ' ');

/** The filters of `export`'s options; a value it cannot use is a usage error (exit code 2). */
function exportQuery(options: CommandOptions): AuditExportQuery {
  const query: AuditExportQuery = {};
  const text = (option: string, value: string | undefined): string | undefined => {
    if (value !== undefined && value.trim() === '') throw new CliUsageError(`--${option} needs a value`);
    return value;
  };
  const time = (option: string, value: string | undefined): Date | undefined => {
    if (value === undefined) return undefined;
    // A time without a zone is UTC, as the trail stores it; a day off the calendar is refused, not rolled over.
    const date = parseIsoInstant(value);
    if (!date) {
      throw new CliUsageError(`--${option} ${JSON.stringify(value)} is not an ISO 8601 date or time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)`);
    }
    return date;
  };
  const from = time('since', options.since);
  const to = time('until', options.until);
  if (from && to && from.getTime() >= to.getTime()) throw new CliUsageError('--since must be before --until');
  if (from) query.from = from;
  if (to) query.to = to;
  const actorId = text('actor', options.actor);
  if (actorId !== undefined) query.actorId = actorId;
  const actorType = text('actor-type', options['actor-type']);
  if (actorType !== undefined) query.actorType = actorType;
  if (options.action !== undefined) query.action = options.action.map((action) => text('action', action)!);
  if (options.target !== undefined) {
    const colon = options.target.indexOf(':');
    if (colon < 1 || colon === options.target.length - 1) {
      throw new CliUsageError(`--target ${JSON.stringify(options.target)} is not <type>:<id> (e.g. order:42)`);
    }
    query.target = { type: options.target.slice(0, colon), id: options.target.slice(colon + 1) };
  }
  const source = text('source', options.source);
  if (source !== undefined) query.source = source;
  if (options.outcome !== undefined) {
    if (!(AUDIT_OUTCOMES as readonly string[]).includes(options.outcome)) throw new CliUsageError(`--outcome must be one of ${AUDIT_OUTCOMES.join(', ')}, got ${JSON.stringify(options.outcome)}`);
    query.outcome = options.outcome as AuditOutcome;
  }
  return query;
}

/** "exported N events" on standard error while an export runs, when it is a terminal. */
function exportProgress(stderr: CliIo['stderr']): { update: (exported: number) => void; done: (exported: number) => void } {
  if (!stderr.isTTY) return { update: () => undefined, done: () => undefined };
  return {
    update: (exported) => void stderr.write(`\rexported ${exported} events`),
    done: (exported) => void stderr.write(`\rexported ${exported} events\n`),
  };
}

/**
 * `prove <id>`: the inclusion proof of one event in the tree of the last stored
 * checkpoint, as JSON (what `verify-proof` and `verifyInclusion` check). Read-only: an
 * event not yet covered by a checkpoint is an error (exit 1) until the app signs the next.
 */
export async function proveCommand(id: string | undefined, options: CommandOptions, io: CliIo): Promise<number> {
  if (id === undefined || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
    throw new CliUsageError(`name the event: prove <id> (a UUID)${id === undefined ? '' : `, got ${JSON.stringify(id)}`}`);
  }
  return withDatabase(options, async (dataSource) => {
    bindUtcDates(dataSource);
    // Ids are stored in lower case; a UUID is the same id in either case.
    const row = await dataSource.getRepository(AuditLogEntity).findOne({ where: { id: id.toLowerCase() } });
    if (!row) return fail(io, `no event ${id} in audit_log`);
    let checkpoint: Awaited<ReturnType<typeof latestCheckpoint>>;
    try {
      checkpoint = await latestCheckpoint(dataSource.manager);
    } catch (err) {
      if (err instanceof AuditIntegrityError) return fail(io, err.message);
      throw err;
    }
    if (row.seq === null || !checkpoint || checkpoint.treeSize < row.seq) {
      return fail(io, `event ${id} is not covered by a signed checkpoint yet (the app signs one every checkpointEvery, or call AuditService.checkpoint())`);
    }
    let proof: AuditInclusionProof;
    try {
      proof = await inclusionProofOf(dataSource.manager, row, checkpoint);
    } catch (err) {
      if (err instanceof AuditIntegrityError || (err as Error).name === 'MissingTreeNodeError') return fail(io, (err as Error).message);
      throw err;
    }
    const output = openOutput(options.out, io.stdout);
    await output.write(`${JSON.stringify(proof, null, 2)}\n`);
    await output.close();
    return 0;
  });
}

/**
 * `checkpoints`: the stored checkpoint notes, and the purge records of the retention
 * purge, in the checkpoints-file format (what `verify --events` checks an export with).
 */
export async function checkpointsCommand(options: CommandOptions, io: CliIo): Promise<number> {
  const count = await withDatabase(options, async (dataSource) => {
    const output = openOutput(options.out, io.stdout);
    const source = new DatabaseLogSource(dataSource);
    let n = 0;
    for await (const note of mergeCheckpoints(source.checkpoints(), await source.purgeNotes())) {
      await output.write(formatCheckpointsFile([note]));
      n++;
    }
    await output.close();
    return n;
  });
  if (options.out !== undefined) io.stderr.write(`wrote ${plural(count, 'checkpoint')} to ${options.out}\n`);
  return 0;
}

/** `keygen`: a new Ed25519 private key (PKCS#8 PEM) and its verifier key string, on standard output. */
export function keygenCommand(options: CommandOptions, io: CliIo): number {
  const name = options.name ?? 'audit';
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  let vkey: string;
  try {
    vkey = verifierKey(name, publicKey);
  } catch (err) {
    throw new CliUsageError(`--name: ${(err as Error).message}`);
  }
  io.stdout.write(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  io.stdout.write(`${vkey}\n`);
  io.stderr.write('The PEM block is the signing key (integrity.signingKey): keep it secret. The last line is the verifier key: give it to whoever verifies.\n');
  return 0;
}

/** `kind seq=… id=… treeSize=… message`, the fields that apply. */
/** `1 event`, `2 events`. */
const plural = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? '' : 's'}`;

export function formatProblem(problem: AuditIntegrityProblem): string {
  const parts: string[] = [problem.kind];
  if (problem.seq !== undefined) parts.push(`seq=${problem.seq}`);
  if (problem.id !== undefined) parts.push(`id=${problem.id}`);
  if (problem.treeSize !== undefined) parts.push(`treeSize=${problem.treeSize}`);
  if (problem.node !== undefined) parts.push(`level=${problem.node.level} index=${problem.node.index}`);
  parts.push(problem.message);
  return parts.join(' ');
}

function summary(result: AuditVerifyResult): string {
  const counts = `tree size ${result.treeSize}, ${plural(result.events, 'event')} and ${plural(result.checkpoints, 'checkpoint')} checked`;
  const unsigned = result.unverified ? `; ${plural(result.unverified, 'event')} after the last checkpoint ${result.unverified === 1 ? 'is' : 'are'} not signed yet` : '';
  const pending = result.unsequenced
    ? `; ${plural(result.unsequenced, 'event')} without a seq, not checked (the integrator's backlog, or stored while integrity was off)`
    : '';
  const purged = result.purgedThrough ? `; events 1 to ${result.purgedThrough} were purged (${result.signaturesChecked === false ? '' : 'signed '}purge record)` : '';
  const keyless = result.signaturesChecked === false ? '; checkpoint signatures NOT checked (no --public-key)' : '';
  if (result.ok) return `OK: ${counts}${purged}${unsigned}${pending}${keyless}`;
  const more = result.truncatedReport ? ' (more were found than listed)' : '';
  return `FAILED: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}${more}; ${counts}${purged}${unsigned}${pending}${keyless}`;
}

const NO_KEY_WARNING =
  'warning: no --public-key given, so the signatures of checkpoints and purge records are NOT checked: this shows the audit ' +
  'tables agree with their checkpoints, not who signed them (whoever can write the database can write both). Give the public ' +
  'key (keygen prints it) to detect that.';

function fail(io: CliIo, reason: string): number {
  io.stdout.write(`FAILED: ${reason}\n`);
  return 1;
}

async function readNotes(path: string): Promise<string[]> {
  try {
    return await readCheckpointsFile(path);
  } catch (err) {
    throw new CliUsageError(`cannot read the checkpoints file ${path}: ${(err as Error).message}`);
  }
}

/** Runs `work` on the database of `--url`; a failure to read it is exit code 2. */
async function withDatabase<T>(options: CommandOptions, work: (dataSource: DataSource) => Promise<T>): Promise<T> {
  if (options.url === undefined) throw new CliUsageError('name the database: --url <url>');
  const args: DatabaseArguments = { url: options.url, schema: options.schema, tablePrefix: options['table-prefix'] };
  refuseOutputOverDatabase(args, options.out);
  const dataSource = await openDatabase(args);
  try {
    return await work(dataSource);
  } catch (err) {
    if (isQueryFailure(err)) throw new DatabaseUnavailableError(`Cannot read the audit tables: ${(err as Error).message}`);
    throw err;
  } finally {
    await dataSource.destroy();
  }
}

const isQueryFailure = (err: unknown): boolean => err instanceof Error && err.name === 'QueryFailedError';

/** A progress line on standard error, when it is a terminal. */
function progressLine(stderr: CliIo['stderr']): { update: (checked: number, total: number) => void; done: () => void } {
  if (!stderr.isTTY) return { update: () => undefined, done: () => undefined };
  let shown = false;
  return {
    update: (checked, total) => {
      shown = true;
      stderr.write(`\rchecked ${checked}${total ? ` of ${total}` : ''} events`);
    },
    done: () => {
      if (shown) stderr.write('\n');
    },
  };
}
