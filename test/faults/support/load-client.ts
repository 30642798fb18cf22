import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

/** One HTTP call the load client makes. */
export interface RequestSpec {
  method: 'POST' | 'PATCH';
  path: string;
  body: unknown;
  headers?: Record<string, string>;
  /** The `@Audited` action of the route; `undefined` for an undecorated route. */
  action: string | undefined;
  /** A name for the call in reports, e.g. `create`. */
  operation: string;
}

/** What the client saw of one call. */
export interface ResponseRecord {
  requestId: string;
  operation: string;
  action: string | undefined;
  /** The HTTP status; `undefined` when no response came (see `error`). */
  status: number | undefined;
  /** For a call without a response: the network error's code, or `timeout`. */
  error?: string;
  /** The `x-request-id` the response carried. */
  echoedRequestId?: string | null;
  /** When the call was made (ms since the epoch). */
  startedAt: number;
}

/** Picks the next call; `ids` are the items the client has seen created (2xx). */
export type RequestPicker = (ids: readonly number[]) => RequestSpec;

export interface LoadOptions {
  /** Stop starting calls after this long. */
  durationMs: number;
  /** Calls in flight at most. */
  concurrency: number;
  /** Stop after this many calls, whatever the time. */
  maxRequests: number;
  /** Each call is aborted after this long (counted as `timeout`). */
  timeoutMs: number;
  pick: RequestPicker;
  /** Stop early when this signal aborts. */
  signal?: AbortSignal;
}

/** Half the updates go to one of the newest items, so that calls wait on each other's row locks. */
const HOT_ITEMS = 8;

const anyOf = (ids: readonly number[]): number | undefined => {
  if (ids.length === 0) return undefined;
  const from = Math.random() < 0.5 ? Math.max(0, ids.length - HOT_ITEMS) : 0;
  return ids[from + Math.floor(Math.random() * (ids.length - from))];
};

/** The normal mix: inserts, inserts that also update another row, audited and undecorated updates. */
export const normalMix: RequestPicker = (ids) => {
  const roll = Math.random();
  const known = anyOf(ids);
  const value = Math.floor(Math.random() * 1_000_000);
  if (known === undefined || roll < 0.35) {
    return { method: 'POST', path: '/items', body: { label: `item ${value}`, value }, action: 'item.created', operation: 'create' };
  }
  if (roll < 0.55) {
    return { method: 'POST', path: '/items', body: { label: `item ${value}`, value, touch: known }, action: 'item.created', operation: 'create+touch' };
  }
  if (roll < 0.8) {
    return { method: 'PATCH', path: `/items/${known}`, body: { value }, action: 'item.updated', operation: 'update' };
  }
  return { method: 'POST', path: `/items/${known}/touch`, body: { value }, action: undefined, operation: 'touch' };
};

const errorCode = (error: unknown): string => {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return 'timeout';
  const cause = (error as { cause?: { code?: unknown; name?: unknown } }).cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  if (cause && typeof cause.name === 'string') return cause.name;
  return error instanceof Error ? error.name : 'error';
};

/**
 * Drives the fault app with a bounded number of concurrent calls for a bounded time, each
 * with its own `x-request-id`, and records every call's status and echoed request id.
 * The app's URL is read before each call, so restarts on another port are followed;
 * while the app is down (no URL) workers wait briefly instead of calling.
 */
export class LoadClient {
  readonly records: ResponseRecord[] = [];
  readonly ids: number[] = [];
  private sequence = 0;
  private readonly prefix: string;

  constructor(
    private readonly url: () => string | undefined,
    label: string,
  ) {
    this.prefix = `${label}-${randomBytes(3).toString('hex')}`;
  }

  async run(options: LoadOptions): Promise<void> {
    const deadline = Date.now() + options.durationMs;
    let started = 0;
    const more = () => Date.now() < deadline && started < options.maxRequests && !options.signal?.aborted;
    const worker = async (): Promise<void> => {
      while (more()) {
        const base = this.url();
        if (base === undefined) {
          await sleep(50);
          continue;
        }
        started++;
        const failed = !(await this.call(base, options.pick(this.ids), options.timeoutMs));
        // A refused connection fails at once: do not spin while the app is down.
        if (failed) await sleep(50);
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  }

  /** Makes one call; `true` when a response (any status) came back. */
  async call(base: string, spec: RequestSpec, timeoutMs: number): Promise<boolean> {
    const requestId = `${this.prefix}-${++this.sequence}`;
    const record: ResponseRecord = { requestId, operation: spec.operation, action: spec.action, status: undefined, startedAt: Date.now() };
    this.records.push(record);
    let headerStatus: number | undefined;
    try {
      const response = await fetch(`${base}${spec.path}`, {
        method: spec.method,
        headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...spec.headers },
        body: JSON.stringify(spec.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      record.echoedRequestId = response.headers.get('x-request-id');
      headerStatus = response.status;
      // Only a complete response counts as an answer: a connection destroyed after the
      // headers (fail-closed when the headers were already out) is an error to the caller.
      const text = await response.text();
      record.status = response.status;
      if (response.ok && spec.operation.startsWith('create')) {
        const id = (JSON.parse(text) as { id?: unknown }).id;
        if (typeof id === 'number') this.ids.push(id);
      }
      return true;
    } catch (error) {
      if (record.status !== undefined) return true;
      record.error = headerStatus === undefined ? errorCode(error) : `${headerStatus}+${errorCode(error)}`;
      return false;
    }
  }
}
