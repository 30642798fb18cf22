import type { OutgoingHttpHeaders } from 'node:http';

/** The parts of Node's `ServerResponse` (Express's response, Fastify's `reply.raw`) this uses. */
export interface NodeResponse {
  statusCode: number;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly socket?: {
    readonly destroyed: boolean;
    /** Bytes queued on the connection, not yet handed to the system. */
    readonly writableLength?: number;
    once?(event: 'drain' | 'close', listener: () => void): unknown;
    resetAndDestroy?: () => unknown;
  } | null;
  /** The request answered (Node's `ServerResponse.req`). */
  readonly req?: { readonly httpVersionMajor?: number; readonly httpVersionMinor?: number } | null;
  writeHead: (...args: unknown[]) => unknown;
  write: (...args: unknown[]) => unknown;
  end: (...args: unknown[]) => unknown;
  /** Sends the headers now (Node's; Nest's SSE calls it before its first event). */
  flushHeaders?: (...args: unknown[]) => unknown;
  setHeader(name: string, value: string | number | readonly string[]): unknown;
  getHeader(name: string): unknown;
  getHeaderNames(): string[];
  getHeaders(): Record<string, unknown>;
  removeHeader(name: string): void;
  destroy(error?: Error): unknown;
  once(event: 'close', listener: () => void): unknown;
}

export interface HoldOptions {
  /** Called once, when the response is about to end; the end waits for it. */
  beforeEnd(statusCode: number, body: unknown): Promise<void>;
  /** On failure: `true` ends the response as it was (fail-open); `false` fails it. */
  failOpen: boolean;
  /** A header kept on a response replaced by a 500 (the request id). */
  keepHeader: string;
  /**
   * Called when the server destroys the response before asking for its end (a stream that
   * failed midway, a handler's `destroy()`): its client never gets the whole answer. Not
   * when the client went away first (the response is destroyed already then).
   */
  onCut(): void;
}

const FAILED_BODY = JSON.stringify({ statusCode: 500, message: 'Internal server error' });

/**
 * Bytes of a body that ends with the connection (see `holdResponse`) kept back, with its
 * headers, until the events are stored; a longer body goes out as it is written.
 */
export const CLOSE_DELIMITED_HOLD_BYTES = 1024 * 1024;

/**
 * Bytes of such bodies held back at once in the process, all responses together: past
 * it, a body's bytes go out as they are written, as a longer body's do, so that many
 * HTTP/1.0 clients at once cannot make the process hold a mebibyte each.
 */
export const CLOSE_DELIMITED_HOLD_TOTAL_BYTES = 32 * 1024 * 1024;

/**
 * Milliseconds a reset waits after the response's last bytes went out. A reset that reaches
 * the client together with bytes it has not read yet may be taken for an orderly end (Node
 * on Linux reports the end of the data, not the reset, when both are pending at once): a
 * reset right after the last bytes, as when the store fails at once (SQLite, a trigger),
 * looked like the stream's end. The client is given the time to read them first.
 */
export const RESET_AFTER_BYTES_MS = 100;

/** Longest a reset waits for the bytes queued on the connection to go out (a client that does not read). */
export const RESET_DRAIN_MS = 1_000;
/** How often the bytes still queued on a connection to be reset are looked at. */
const RESET_POLL_MS = 10;

/** Bytes held back now by every response's {@link holdResponse} (bodies that end with the connection). */
let closeDelimitedHeld = 0;

/** The bytes bodies that end with the connection hold back now, process-wide. */
export function closeDelimitedBytesHeld(): number {
  return closeDelimitedHeld;
}

/**
 * Holds back the end of a response until `beforeEnd` has run (the unit's events are
 * stored), whoever ends it: Nest's router, an `@Res()` handler, a stream, SSE. When
 * `beforeEnd` fails (fail-closed): a response whose headers have not gone out becomes a
 * 500 (its own headers and body dropped, so nothing of it leaks, not even a cookie); one
 * whose headers or body already went out (a stream) is cut by resetting the connection.
 * A response the server destroys before its end (a stream that failed midway) is reported
 * to `onCut`: what it answers is not what the handler meant to.
 *
 * `writeHead` (Fastify calls it just before `end`) is turned into the status and headers
 * it sets, so that the headers stay unsent until the end unless the body starts first.
 *
 * A body whose length is declared (`Content-Length`: a `StreamableFile` of a buffer, a
 * file sent with its size) is complete for its client as soon as that many bytes arrived,
 * however the connection ends afterwards: its last byte is held back and goes out with the
 * end, once the events are stored — never, when the connection is cut.
 *
 * A body that ends with the connection (an HTTP/1.0 request, no length declared, no chunked
 * encoding) cannot be told from a cut one by its bytes, and a reset that follows its bytes
 * closely may reach the client as an orderly end (seen on Linux): up to
 * `CLOSE_DELIMITED_HOLD_BYTES`, such a body is held back with its headers until the end,
 * so that fail-closed can still answer a 500; a longer one goes out as it is written and
 * is cut by the reset. So does a stream whose headers the app flushes (`flushHeaders()`:
 * Nest's SSE, before its first event): it asks for its bytes to go out as they are
 * written, and holding them back until its end would hold the whole stream.
 */
export function holdResponse(response: NodeResponse, options: HoldOptions): void {
  const writeHead = response.writeHead;
  const write = response.write;
  const end = response.end;
  const destroy = response.destroy;
  const flushHeaders = response.flushHeaders;
  let ending = false;
  /** When bytes were last written (or headers flushed): a reset waits {@link RESET_AFTER_BYTES_MS} after it. */
  let lastOut = 0;
  // Once the body starts (or the held end is let go), Node's own implicit writeHead must pass.
  let passThrough = false;
  /** The status and headers as they were when the response was ended: what it ends with. */
  let ended: { status: number; headers: Record<string, unknown> } | undefined;
  /** The declared length of the body (read at its first write; `null` before, `undefined` when none). */
  let declared: number | undefined | null = null;
  /** Bytes of the body written so far, and those held back from the declared length's last byte on. */
  let written = 0;
  let held: Buffer | undefined;
  /**
   * A body that ends with the connection: its writes so far, not yet passed on (decided at
   * its first write; `null` before, `undefined` when the body is not such a one or is too long).
   */
  let unsent: { writes: unknown[][]; bytes: number; answer: string } | undefined | null = null;
  /** Lets go of the writes of a body that ends with the connection, kept so far: returns them. */
  const dropUnsent = (): unknown[][] => {
    const writes = unsent?.writes ?? [];
    if (unsent) closeDelimitedHeld -= unsent.bytes;
    unsent = undefined;
    return writes;
  };
  /** Passes on the writes of a body that ends with the connection, kept so far. */
  const sendUnsent = (response: NodeResponse): void => {
    for (const args of dropUnsent()) write.apply(response, args);
  };
  /** Lets the end go (with the body's held bytes, unless the body is replaced). */
  const release = (response: NodeResponse, args: unknown[], withHeld = true): unknown => {
    passThrough = true;
    if (withHeld && !response.destroyed) sendUnsent(response);
    dropUnsent();
    const rest = held;
    held = undefined;
    if (rest && withHeld && !response.destroyed) write.call(response, rest);
    return end.apply(response, args);
  };
  /** Undoes what ran after the end was asked for (an error handler answering a second time). */
  const restore = (response: NodeResponse): void => {
    if (!ended || response.headersSent) return;
    response.statusCode = ended.status;
    // Usually nothing ran in between: only what differs is touched (setHeader validates).
    const now = response.getHeaders();
    for (const name in now) if (!(name in ended.headers)) response.removeHeader(name);
    for (const name in ended.headers) {
      const value = ended.headers[name];
      if (now[name] !== value) response.setHeader(name, value as string | number | readonly string[]);
    }
  };

  response.writeHead = function (this: NodeResponse, ...args: unknown[]) {
    if (passThrough || this.headersSent) return writeHead.apply(this, args);
    if (ending) return this; // the response is decided: a second answer changes nothing
    const [status, second, third] = args;
    if (typeof status === 'number') this.statusCode = status;
    const headers = typeof second === 'string' ? third : second;
    applyHeaders(this, headers);
    return this;
  };
  if (flushHeaders) {
    response.flushHeaders = function (this: NodeResponse, ...args: unknown[]) {
      // A stream that ends with the connection wants its headers out now: its body goes out
      // as it is written (see above). Any other response keeps its headers until its body starts.
      if (!passThrough && !ending && !this.headersSent && unsent !== undefined && declaredLength(this.getHeader('content-length')) === undefined && endsWithConnection(this)) {
        passThrough = true;
        if (declared === null) declared = undefined;
        sendUnsent(this);
      }
      lastOut = Date.now();
      return flushHeaders.apply(this, args);
    };
  }
  response.write = function (this: NodeResponse, ...args: unknown[]) {
    lastOut = Date.now();
    if (declared === null) declared = declaredLength(this.getHeader('content-length'));
    if (unsent === null) {
      unsent = declared === undefined && endsWithConnection(this) ? { writes: [], bytes: 0, answer: answerOf(this) } : undefined;
      // A response that goes away unended (its client left) lets go of what it held.
      if (unsent) this.once('close', dropUnsent);
    }
    if (unsent && !ending) {
      const chunk = bufferOf(args[0], args[1]);
      if (chunk && unsent.bytes + chunk.length <= CLOSE_DELIMITED_HOLD_BYTES && closeDelimitedHeld + chunk.length <= CLOSE_DELIMITED_HOLD_TOTAL_BYTES) {
        // Copied: the caller may reuse its buffer once its callback ran (at once, as a
        // write the socket took: one that waits for it before writing on must not wait for the end).
        unsent.writes.push([Buffer.from(chunk)]);
        unsent.bytes += chunk.length;
        closeDelimitedHeld += chunk.length;
        const callback = args.find((arg): arg is () => void => typeof arg === 'function');
        if (callback) process.nextTick(callback);
        return true;
      }
      passThrough = true;
      sendUnsent(this);
    }
    passThrough = true;
    if (declared === undefined || ending) return write.apply(this, args);
    const chunk = bufferOf(args[0], args[1]);
    if (!chunk) return write.apply(this, args);
    const callback = args.find((arg): arg is (error?: Error | null) => void => typeof arg === 'function');
    // Bytes that may go before the body's last one.
    const room = Math.max(declared - 1 - written, 0);
    if (!held && chunk.length <= room) {
      written += chunk.length;
      return write.apply(this, args);
    }
    const head = held ? chunk.subarray(0, 0) : chunk.subarray(0, room);
    held = held ? Buffer.concat([held, chunk]) : chunk.subarray(room);
    written += head.length;
    if (head.length > 0) return callback ? write.call(this, head, callback) : write.call(this, head);
    if (callback) process.nextTick(callback);
    return true;
  };
  response.destroy = function (this: NodeResponse, ...args: unknown[]) {
    // A response (or its connection) destroyed already: its client went away first.
    if (!ending && !this.destroyed && this.socket?.destroyed !== true) options.onCut();
    return destroy.apply(this, args as [Error?]);
  };
  response.end = function (this: NodeResponse, ...args: unknown[]) {
    if (ending) return this;
    ending = true;
    ended = { status: this.statusCode, headers: { ...this.getHeaders() } };
    // Its status or headers changed since the body started: only a framework that took the
    // headers for unsent (they are held) answers anew, as Nest does when an `@Res()` handler
    // fails. The body written so far was the abandoned answer's: it never goes out.
    if (unsent && unsent.answer !== answerOf(this)) dropUnsent();
    const body = typeof args[0] === 'function' ? undefined : args[0];
    options.beforeEnd(this.statusCode, body).then(
      () => {
        restore(this);
        release(this, args);
      },
      (error: unknown) => {
        if (options.failOpen) {
          restore(this);
          release(this, args);
        } else if (!this.headersSent) {
          for (const name of this.getHeaderNames()) if (name !== options.keepHeader) this.removeHeader(name);
          this.statusCode = 500;
          this.setHeader('content-type', 'application/json; charset=utf-8');
          this.setHeader('content-length', Buffer.byteLength(FAILED_BODY));
          const callback = args.find((arg) => typeof arg === 'function');
          release(this, callback ? [FAILED_BODY, callback] : [FAILED_BODY], false);
        } else {
          resetOnceRead(this, error instanceof Error ? error : new Error(String(error)), lastOut);
        }
      },
    );
    return this;
  };
}

/**
 * Cuts `response` by resetting its connection — a reset, not an orderly close: a body that
 * ends with the connection (HTTP/1.0, no length declared, no chunks) would otherwise look
 * whole to its client, and a chunked one ended. The reset waits until the bytes queued on
 * the connection went out (at most {@link RESET_DRAIN_MS}) and {@link RESET_AFTER_BYTES_MS}
 * after the last of them (`lastOut`, or the drain), so that it reaches a client that has
 * read them: one that gets the reset with bytes still unread may take it for an end.
 */
function resetOnceRead(response: NodeResponse, error: Error, lastOut: number): void {
  const socket = response.socket;
  let done = false;
  let wait: NodeJS.Timeout | undefined;
  const reset = (): void => {
    if (done) return;
    done = true;
    clearTimeout(bound);
    clearTimeout(wait);
    if (socket && !socket.destroyed && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
    response.destroy(error);
  };
  const bound = setTimeout(reset, RESET_DRAIN_MS + RESET_AFTER_BYTES_MS);
  const afterBytes = (since: number): void => {
    if (!done) wait = setTimeout(reset, Math.max(0, since + RESET_AFTER_BYTES_MS - Date.now()));
  };
  if (!socket || socket.destroyed) return reset();
  // A client gone meanwhile: nothing to wait for.
  socket.once?.('close', reset);
  // Bytes still queued: looked at every few milliseconds ('drain' comes only after a write
  // that filled the buffer), and counted from when they went out.
  const pending = (): boolean => (socket.writableLength ?? 0) > 0;
  if (!pending()) return afterBytes(lastOut);
  const whenSent = (): void => {
    if (done) return;
    if (pending()) wait = setTimeout(whenSent, RESET_POLL_MS);
    else afterBytes(Date.now());
  };
  whenSent();
}

/**
 * True when `response`'s body ends with its connection: an answer to an HTTP/1.0 (or 0.9)
 * request, with no `Transfer-Encoding` of the app's (Node chunks only a body that asks for it
 * there). The body's declared length is checked by the caller.
 */
function endsWithConnection(response: NodeResponse): boolean {
  const request = response.req;
  if (!request || typeof request.httpVersionMajor !== 'number' || typeof request.httpVersionMinor !== 'number') return false;
  const oldHttp = request.httpVersionMajor < 1 || (request.httpVersionMajor === 1 && request.httpVersionMinor < 1);
  return oldHttp && response.getHeader('transfer-encoding') === undefined;
}

/** The status and headers `response` would answer with now, as a string to compare. */
function answerOf(response: NodeResponse): string {
  const headers = response.getHeaders();
  return JSON.stringify([response.statusCode, ...Object.keys(headers).sort().map((name) => [name, headers[name]])]);
}

/** A `Content-Length` header's value as a number of bytes, if it is one. */
function declaredLength(value: unknown): number | undefined {
  const length = typeof value === 'number' ? value : typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/** A chunk given to `write` as bytes (`undefined` for anything `write` would not take as a body chunk). */
function bufferOf(chunk: unknown, encoding: unknown): Buffer | undefined {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8');
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return undefined;
}

function applyHeaders(response: NodeResponse, headers: unknown): void {
  if (Array.isArray(headers)) {
    // [name, value, name, value, …] or [[name, value], …]
    if (Array.isArray(headers[0])) {
      for (const [name, value] of headers as Array<[string, string]>) response.setHeader(name, value);
    } else {
      for (let i = 0; i + 1 < headers.length; i += 2) response.setHeader(String(headers[i]), headers[i + 1] as string);
    }
  } else if (headers && typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
      if (value !== undefined) response.setHeader(name, value as string | number | readonly string[]);
    }
  }
}
