import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditTreeEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/lost-answer';
const { privateKey } = generateKeyPairSync('ed25519');

/** Forwards both ways; once armed, a connection that sent an INSERT into audit_tree has its next COMMIT sent and the answer dropped, then is cut. */
class TreeCommitCutter {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  armed = false;
  constructor(private readonly host: string, private readonly port: number) {}
  async start(): Promise<number> {
    this.server = createServer((client) => {
      const upstream = connect(this.port, this.host);
      this.sockets.add(client).add(upstream);
      let sawTree = false;
      let doomed = false;
      client.on('data', (chunk: Buffer) => {
        upstream.write(chunk);
        const text = chunk.toString('latin1');
        if (/INSERT INTO\W+(?:\w+\W+)?audit_tree\W/i.test(text)) sawTree = true;
        // A NUL ends the query text in PostgreSQL's protocol.
        if (this.armed && sawTree && (text.includes('COMMIT\0') || /\bCOMMIT$/.test(text))) {
          this.armed = false;
          doomed = true;
          setTimeout(() => {
            client.destroy();
            upstream.destroy();
          }, 100);
        }
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!doomed && !client.destroyed) client.write(chunk);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return (this.server.address() as { port: number }).port;
  }
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * The integrator's batch COMMIT reaches the server and commits, but its answer is lost (the
 * connection drops). Nothing was tampered with: the events have their seq and their leaves.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('an integrator batch whose COMMIT answer is lost, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TreeCommitCutter;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const target = db.options as { host: string; port: number };
    proxy = new TreeCommitCutter(target.host, target.port);
    const port = await proxy.start();
    t = await createTestApp({
      db: { ...db, options: { ...db.options, port } as TestDatabase['options'] },
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } },
    });
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('checkpoint() does not report a seq set back to NULL outside the integrator', async () => {
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.refunded', reason: `refund ${i}`, target: { type: 'order', id: String(i) } });
    expect(await t.dataSource.getRepository(AuditLogEntity).count()).toBe(3);
    proxy.armed = true;
    const first = await t.audit.checkpoint().then(
      () => 'ok',
      (error: Error) => `${error.name}: ${error.message}`,
    );
    // The batch did commit: every event has its seq and one leaf.
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3]);
    expect(await t.dataSource.getRepository(AuditTreeEntity).count({ where: { level: 0 } })).toBe(3);
    // A lost answer is a connection failure, not tampering.
    expect(first).not.toMatch(/set back to NULL outside the integrator/);
  }, 30_000);
});
