import type { TestApp } from '../app/create-test-app.js';

/** How a client saw a response end: whole (its status and body), or broken off (the status, if it came). */
export type Completion = { kind: 'complete'; status: number; body: string } | { kind: 'broken'; status?: number };

/** Requests `path` and reads the whole body, saying whether the response arrived whole. */
export async function complete(t: TestApp, path: string, init: RequestInit = {}): Promise<Completion> {
  let status: number | undefined;
  try {
    const response = await t.request(path, { ...init, signal: AbortSignal.timeout(10_000) });
    status = response.status;
    return { kind: 'complete', status, body: await response.text() };
  } catch {
    return { kind: 'broken', status };
  }
}
