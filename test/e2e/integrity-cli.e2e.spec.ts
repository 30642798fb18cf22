import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditCheckpointEntity,
  AuditEntities,
  AuditLogEntity,
  AuditMigrations,
  AuditTreeEntity,
  bindUtcDates,
  type AuditInclusionProofWithNote,
} from '../../lib/index.js';
import { canonicalEventJson } from '../../lib/integrity/canonical-json.js';
import { createSigner, formatCheckpoint, parseVerifierKey, signNote, verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { inclusionProof, leafHash, perfectSubtrees, rootHash } from '../../lib/integrity/merkle.js';
import { MARIADB, POSTGRES } from '../support/database-probe.js';
import { cli, cliProcess, dropAppendOnlyGuards } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/cli';
const EVENTS = 10;
const CHECKPOINTS = [4, 7, 10];



describe.each(databases())('npx nestjs-system-audit on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  let dir: string;
  let url: string[];
  let keyFile: string;
  let vkey: string;
  const rows: AuditLogEntity[] = [];
  let leaves: Buffer[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-cli-'));
    db = await createTestDatabase(kind);
    let options = db.options;
    if (kind === 'sqlite') {
      const file = join(dir, 'audit.sqlite');
      options = { type: 'better-sqlite3', database: file, entityPrefix: 'shop_' };
      url = ['--url', `sqlite:${file}`, '--table-prefix', 'shop_'];
    } else if (kind === 'postgres') {
      const schema = (db.options as { schema: string }).schema;
      url = ['--url', `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}`, '--schema', schema];
    } else {
      const database = (db.options as { database: string }).database;
      url = ['--url', `mariadb://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${database}`];
    }
    dataSource = bindUtcDates(await new DataSource({ ...options, entities: [...AuditEntities], migrations: AuditMigrations } as never).initialize());
    await dataSource.runMigrations();
    // The plain-SQL tampering below is an administrator's, who drops the append-only triggers first.
    await dropAppendOnlyGuards(dataSource);

    const { privateKey } = generateKeyPairSync('ed25519');
    const signer = createSigner(ORIGIN, privateKey);
    vkey = verifierKey(ORIGIN, privateKey);
    keyFile = join(dir, 'signing-key.pem');
    writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));

    // A valid log, as the integrator writes it: rows with seq, the tree's leaves and complete nodes, signed checkpoints.
    const start = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    for (let i = 1; i <= EVENTS; i++) {
      rows.push(
        dataSource.getRepository(AuditLogEntity).create({
          id: randomUUID(),
          occurredAt: new Date(start + i * 1001),
          action: 'order.updated',
          outcome: 'success',
          kind: 'intent',
          actorType: 'user',
          actorId: `user-${i}`,
          actorDisplay: i % 2 ? 'Zoë' : null,
          source: 'http',
          ip: '203.0.113.9',
          method: 'PATCH',
          route: '/orders/:id',
          path: `/orders/${i}`,
          targetType: 'Order',
          targetId: String(i),
          changes: [{ entity: 'Order', id: String(i), operation: 'update', fields: { status: { from: 'new', to: 'paid' } } }],
          context: { tenant: 't1', nested: { b: 2, a: [1, 'x'] } },
          reason: 'customer asked',
          seq: i,
        }),
      );
    }
    await dataSource.getRepository(AuditLogEntity).save(rows);
    leaves = rows.map((row) => leafHash(Buffer.from(canonicalEventJson(row))));
    const nodes: Array<Partial<AuditTreeEntity>> = [];
    for (let level = 0; 2 ** level <= EVENTS; level++) {
      for (let index = 0; (index + 1) * 2 ** level <= EVENTS; index++) {
        const range = { start: index * 2 ** level, end: (index + 1) * 2 ** level };
        expect(perfectSubtrees(range)).toEqual([{ level, index }]);
        nodes.push({ level, index, hash: rootHash(leaves.slice(range.start, range.end)).toString('hex'), eventId: level === 0 ? rows[index]!.id : null });
      }
    }
    await dataSource.getRepository(AuditTreeEntity).insert(nodes);
    for (const size of CHECKPOINTS) {
      const root = rootHash(leaves.slice(0, size));
      await dataSource.getRepository(AuditCheckpointEntity).insert({
        treeSize: size,
        rootHash: root.toString('hex'),
        note: signNote(formatCheckpoint({ origin: ORIGIN, treeSize: size, rootHash: root }), signer),
        createdAt: new Date(),
      });
    }
  });

  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Most commands run in-process (cli()). In a process of their own, as npx starts them
  // (cliProcess()): verify on each database (its driver loads in the process), and the
  // other commands once, on SQLite.
  const cliOnce = kind === 'sqlite' ? cliProcess : cli;

  it('verify: a clean log exits 0', async () => {
    const run = await cliProcess('verify', ...url, '--public-key', vkey);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe(`OK: tree size ${EVENTS}, ${EVENTS} events and ${CHECKPOINTS.length} checkpoints checked\n`);
    expect(run.code).toBe(0);
    // The private key's file stands for its public half.
    expect((await cli('verify', ...url, '--public-key', keyFile)).code).toBe(0);
  });

  it('verify without --public-key checks all but the signatures, and says so on stderr and in the summary', async () => {
    const run = await cliOnce('verify', ...url);
    expect(run.stderr).toMatch(/^warning: no --public-key given, so the signatures of checkpoints and purge records are NOT checked/);
    expect(run.stdout).toBe(`OK: tree size ${EVENTS}, ${EVENTS} events and ${CHECKPOINTS.length} checkpoints checked; checkpoint signatures NOT checked (no --public-key)\n`);
    expect(run.code).toBe(0);
  });

  it('export, then verify the export against the checkpoints file: exit 0', async () => {
    const exported = join(dir, 'clean.jsonl');
    const checkpoints = join(dir, 'checkpoints.txt');
    expect((await cli('export', ...url, '--out', exported)).code).toBe(0);
    expect((await cliOnce('checkpoints', ...url, '--out', checkpoints)).code).toBe(0);
    const lines = readFileSync(exported, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(EVENTS);
    expect(JSON.parse(lines[2]!)).toMatchObject({ id: rows[2]!.id, seq: 3, occurredAt: rows[2]!.occurredAt.toISOString() });
    expect(readFileSync(checkpoints, 'utf8').split('\n\n')).toHaveLength(2 * CHECKPOINTS.length + 1);
    const run = await cli('verify', '--events', exported, '--checkpoints', checkpoints, '--public-key', vkey);
    expect(run.stdout).toMatch(/^OK: tree size 10/);
    expect(run.code).toBe(0);
  });

  it('verify-proof: a proof built from the tree holds, alone and against the data; a tampered one does not', async () => {
    const note = (await dataSource.getRepository(AuditCheckpointEntity).findOneByOrFail({ treeSize: 7 })).note;
    // A proof whose checkpoint is the note's text alone is read too.
    const proof: AuditInclusionProofWithNote = {
      id: rows[5]!.id,
      seq: 6,
      leafIndex: 5,
      treeSize: 7,
      leafHash: leaves[5]!.toString('base64'),
      path: inclusionProof(leaves.slice(0, 7), 5).map((h) => h.toString('base64')),
      checkpoint: note,
    };
    const file = join(dir, 'proof.json');
    writeFileSync(file, JSON.stringify(proof));
    const alone = await cli('verify-proof', file, '--public-key', vkey);
    expect(alone.stdout).toMatch(/^OK: event .* \(seq 6\) is in the signed tree of size 7/);
    expect(alone.code).toBe(0);
    const withData = await cli('verify-proof', file, '--public-key', vkey, ...url);
    expect(withData.stdout).toMatch(/the database holds it unchanged/);
    expect(withData.code).toBe(0);

    const bad = join(dir, 'bad-proof.json');
    writeFileSync(bad, JSON.stringify({ ...proof, path: [proof.path[1], proof.path[0], ...proof.path.slice(2)] }));
    const run = await cliOnce('verify-proof', bad, '--public-key', vkey);
    expect(run.stdout).toMatch(/^FAILED: the audit path does not lead/);
    expect(run.code).toBe(1);
  });

  it('keygen prints a PEM private key and its verifier key', async () => {
    const run = await cliOnce('keygen', '--name', 'audit.example.test');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    const pem = lines.slice(0, -1).join('\n');
    const key = createPrivateKey(pem);
    expect(key.asymmetricKeyType).toBe('ed25519');
    expect(lines.at(-1)).toBe(verifierKey('audit.example.test', key));
    expect(parseVerifierKey(lines.at(-1)!).name).toBe('audit.example.test');
  });

  it('a plain SQL UPDATE of one reason: verify reports modified at its seq and exits 1; so does its export', async () => {
    const metadata = dataSource.getMetadata(AuditLogEntity);
    const table = metadata.tablePath.split('.').map((part) => dataSource.driver.escape(part)).join('.');
    await dataSource.query(`UPDATE ${table} SET reason = 'nothing to see' WHERE seq = 3`);

    const run = await cli('verify', ...url, '--public-key', vkey);
    expect(run.stdout).toMatch(new RegExp(`^modified seq=3 id=${rows[2]!.id} `, 'm'));
    expect(run.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(run.stdout).toMatch(/^FAILED: 1 problem;/m);
    expect(run.code).toBe(1);
    // Without a key the change is found all the same.
    const keyless = await cli('verify', ...url);
    expect(keyless.stdout).toMatch(new RegExp(`^modified seq=3 id=${rows[2]!.id} `, 'm'));
    expect(keyless.stdout).toMatch(/^FAILED: 1 problem;.*checkpoint signatures NOT checked \(no --public-key\)$/m);
    expect(keyless.code).toBe(1);

    const exported = join(dir, 'tampered.jsonl');
    const checkpoints = join(dir, 'checkpoints.txt');
    expect((await cli('export', ...url, '--out', exported)).code).toBe(0);
    const fromExport = await cli('verify', '--events', exported, '--checkpoints', checkpoints, '--public-key', vkey);
    expect(fromExport.stdout).toMatch(/^modified treeSize=4 events 1 to 4 do not hash/m);
    expect(fromExport.code).toBe(1);
  });

  it('a row given a seq past the tree, without a leaf, is inserted', async () => {
    const forged = dataSource.getRepository(AuditLogEntity).create({ ...rows[0]!, id: randomUUID(), reason: 'forged', seq: EVENTS + 1 });
    await dataSource.getRepository(AuditLogEntity).save(forged);
    const run = await cli('verify', ...url, '--public-key', vkey);
    expect(run.stdout).toMatch(new RegExp(`^inserted seq=${EVENTS + 1} id=${forged.id} `, 'm'));
    expect(run.stdout).toMatch(/^FAILED: 2 problems;/m);
    expect(run.code).toBe(1);
  });
});

describe('npx nestjs-system-audit: usage and connection errors', () => {
  it('exits 2 with a clear message', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const vkey = verifierKey('k', privateKey);
    const unreachable = await cliProcess('verify', '--url', 'postgres://nobody:secret@127.0.0.1:1/none', '--public-key', vkey);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toMatch(/^nestjs-system-audit verify: Cannot connect to postgres:\/\/nobody:\*\*\*@127\.0\.0\.1:1\/none: /);
    const noFile = await cli('verify', '--url', 'sqlite:/nonexistent/x.sqlite', '--public-key', vkey);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toMatch(/nonexistent/);
    const badKey = await cli('verify', '--url', 'sqlite:/nonexistent/x.sqlite', '--public-key', 'not-a-key');
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toMatch(/--public-key "not-a-key" is neither a readable file nor a verifier key string/);
    const unknown = await cli('verify', '--frobnicate');
    expect(unknown.code).toBe(2);
    expect((await cliProcess('nonsense')).code).toBe(2);
  });
});
