import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

/**
 * A point where a request waits for the test, as one calling a slow external service
 * would: `reached` gives what the request that got there passed (its response, for an
 * HTTP request), which goes on once the test calls `release()` (bounded: after 20 s when
 * the test never does). `arm()` makes it ready for the next request.
 */
export class RequestHold<T = ServerResponse> {
  reached!: Promise<T>;
  private arrive!: (response: T) => void;
  private released!: Promise<void>;
  private go!: () => void;

  constructor() {
    this.arm();
  }

  arm(): void {
    this.reached = new Promise((resolve) => (this.arrive = resolve));
    this.released = new Promise((resolve) => (this.go = resolve));
  }

  /** For the request: says it is here, then waits until released. */
  wait(response: T): Promise<void> {
    this.arrive(response);
    setTimeout(this.go, 20_000).unref();
    return this.released;
  }

  release(): void {
    this.go();
  }
}

/** Resolves once the server has seen the client of `response` go away. */
export async function clientGone(response: ServerResponse): Promise<void> {
  if (!response.destroyed) await once(response, 'close');
}
