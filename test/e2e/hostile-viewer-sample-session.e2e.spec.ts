// The sample app's viewer sign-in (`/audit?token=…`, then a cookie) against hostile
// requests: a cookie that is not percent-encoding is a 401, not a 500; the cookie keeps
// only the token that signed the request in, never a `?token=` the request did not use.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleApp, type SampleApp } from '../../sample-app/create-sample-app.js';

describe('sample app: the viewer\'s sign-in under hostile requests', () => {
  let sample: SampleApp;

  beforeAll(async () => {
    sample = await createSampleApp({ database: ':memory:', port: 0, host: '127.0.0.1', expiryIntervalSeconds: 0, logger: ['error', 'warn'] });
  });
  afterAll(async () => {
    await sample?.app.close();
  });

  const page = (path: string, headers: Record<string, string> = {}): Promise<Response> => fetch(`${sample.url}${path}`, { headers, redirect: 'manual' });

  it('answers a viewer cookie that is not percent-encoding with 401, not 500', async () => {
    const response = await page('/audit', { cookie: 'audit_token=%E0%A4%A' });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { message: string }).message).toMatch(/token/i);
  });

  it('keeps in the cookie only the token that signed the request in', async () => {
    // Signed in by the header; the ?token= beside it was never checked.
    const mixed = await page('/audit?token=not-a-token', { authorization: 'Bearer alice-token' });
    expect(mixed.status).toBe(200);
    expect(mixed.headers.get('set-cookie')).toBeNull();
    // Signed in by ?token= itself: kept.
    const signIn = await page('/audit?token=alice-token');
    expect(signIn.status).toBe(200);
    expect(signIn.headers.get('set-cookie')).toBe('audit_token=alice-token; Path=/audit; HttpOnly; SameSite=Strict; Max-Age=28800');
  });
});
