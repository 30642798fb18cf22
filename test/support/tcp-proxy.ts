import { createServer, connect, type Server, type Socket } from 'node:net';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from './test-database.js';

/**
 * What a client chunk is tested with, on its text read as latin1: a regular expression, or
 * a predicate (for what a regular expression says badly, such as {@link endsQuery}).
 */
export type ChunkMatcher = RegExp | ((text: string) => boolean);

const matches = (matcher: ChunkMatcher, text: string): boolean => (typeof matcher === 'function' ? matcher(text) : matcher.test(text));

/**
 * Matches a chunk in which a query's text ends with `sql` (`'COMMIT'`, say) — the statement
 * itself, not a word inside another — in either protocol: PostgreSQL ends a query's text with
 * a NUL; a MySQL/MariaDB query packet ends with its text.
 */
export const endsQuery =
  (sql: string) =>
  (text: string): boolean =>
    text.includes(`${sql}\0`) || (text.endsWith(sql) && !/\w/.test(text.charAt(text.length - sql.length - 1)));

/**
 * A TCP proxy on 127.0.0.1 in front of a database server, for fault tests: it can cut
 * every connection and refuse new ones for a while, delay every chunk both ways, hold
 * every chunk, or — once, for the next statement a client sends that matches — hold the
 * server's answer for a while or drop it with the connection.
 * Never touches the server itself.
 */
export class TcpProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private down = false;
  private latencyMs = 0;
  private cutAfter?: { pattern: ChunkMatcher; onConnectionThatSent?: ChunkMatcher; primed: WeakSet<Socket> };
  private holdAfter?: { pattern: ChunkMatcher; ms: number };
  private frozen = false;
  private readonly held: Array<() => void> = [];
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(port = 0): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
    return this.port;
  }

  /** Destroys every open connection; new ones are refused until `restore()`. */
  cut(): void {
    this.down = true;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.down = false;
  }

  /**
   * Once: after forwarding a client chunk matching `pattern` (a COMMIT, say) to the server,
   * drops everything the server answers on that connection and destroys it a moment later,
   * so the server has done the statement but the client never hears back.
   *
   * With `onConnectionThatSent`, only a connection that has sent a chunk matching it since
   * this call counts (a chunk may match both): "the COMMIT of a transaction that wrote X".
   */
  cutAfterClientSends(pattern: ChunkMatcher, options: { onConnectionThatSent?: ChunkMatcher } = {}): void {
    this.cutAfter = { pattern, onConnectionThatSent: options.onConnectionThatSent, primed: new WeakSet() };
  }

  /** True while a `cutAfterClientSends` pattern waits for its chunk. */
  get cutPending(): boolean {
    return this.cutAfter !== undefined;
  }

  /**
   * Once: after forwarding a client chunk matching `pattern` (a COMMIT, say) to the server,
   * holds everything the server sends on that connection for `ms`, then delivers it in
   * order, the connection left open: the server has done the statement, its answer comes
   * late (after a driver's read timeout, say). Other connections are not held.
   */
  holdReplyAfterClientSends(pattern: ChunkMatcher, ms: number): void {
    this.holdAfter = { pattern, ms };
  }

  /**
   * Holds every chunk, both ways, with the connections left open: a database that stops
   * answering (a partition that drops packets, a server stalled on I/O) rather than one
   * that refuses. `thaw()` sends what was held, in order.
   */
  freeze(): void {
    this.frozen = true;
  }

  thaw(): void {
    this.frozen = false;
    for (const send of this.held.splice(0)) send();
  }

  /** Delays every chunk, both ways, by `ms` (0: none). */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  async stop(): Promise<void> {
    this.frozen = false;
    this.held.length = 0;
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: Socket): void {
    if (this.down) {
      client.destroy();
      return;
    }
    const upstream = connect(this.targetPort, this.targetHost);
    this.sockets.add(client);
    this.sockets.add(upstream);
    let doomed = false;
    let holdUntil = 0;
    const sent = (text: string) => {
      const cut = this.cutAfter;
      if (cut?.onConnectionThatSent && matches(cut.onConnectionThatSent, text)) cut.primed.add(client);
      if (cut && (!cut.onConnectionThatSent || cut.primed.has(client)) && matches(cut.pattern, text)) {
        this.cutAfter = undefined;
        doomed = true;
        setTimeout(() => {
          client.destroy();
          upstream.destroy();
        }, 100);
      }
      if (this.holdAfter && matches(this.holdAfter.pattern, text)) {
        holdUntil = Date.now() + this.holdAfter.ms;
        this.holdAfter = undefined;
      }
    };
    const pipe = (from: Socket, to: Socket) => {
      from.on('data', (chunk: Buffer) => {
        const send = () => {
          if (to.destroyed || (doomed && from === upstream)) return;
          to.write(chunk);
          if (from === client) sent(chunk.toString('latin1'));
        };
        const delay = Math.max(this.latencyMs, from === upstream ? holdUntil - Date.now() : 0);
        if (this.frozen) {
          this.held.push(send);
        } else if (delay > 0) {
          // Keep order: pause reading while a delayed chunk waits.
          from.pause();
          setTimeout(() => {
            send();
            from.resume();
          }, delay);
        } else {
          send();
        }
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }
}

/**
 * A fresh test database of `kind` reached through a started {@link TcpProxy}: the database
 * (to drop), the proxy (to freeze, slow or cut), and the database's options pointing at the
 * proxy (to give the app).
 */
export async function databaseBehindProxy(kind: DatabaseKind): Promise<{ db: TestDatabase; proxy: TcpProxy; viaProxy: TestDatabase }> {
  const db = await createTestDatabase(kind);
  const target = db.options as { host: string; port: number };
  const proxy = new TcpProxy(target.host, target.port);
  await proxy.start();
  return { db, proxy, viaProxy: { ...db, options: { ...db.options, port: proxy.port } as TestDatabase['options'] } };
}
