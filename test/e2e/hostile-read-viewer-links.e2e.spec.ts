// The viewer's links follow the path the request named: a request in absolute form
// (`GET http://other.example/audit`, as clients send to a proxy) or one whose path
// starts with several slashes must not turn them into links to another host.
import { connect } from 'node:net';
import { Injectable, type CanActivate } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditViewerModule } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Injectable()
class LetThrough implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/** One request written as given on a socket of its own, and the whole answer. */
function exchange(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
  });
}

const links = (answer: string): string[] => [...answer.matchAll(/(?:href|action)="([^"]*)"/g)].map((match) => match[1]!);

describe.each(databases().flatMap((kind) => ADAPTERS.map((adapter) => [kind, adapter] as const)))('viewer links of a request in absolute form on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;
  let id: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, imports: [AuditViewerModule.register({ path: '/audit', guard: LetThrough })] });
    id = await t.audit.log({ action: 'doc.linked', target: { type: 'doc', id: '7' }, reason: 'links' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it.each(['/audit?action=doc.linked', `/audit/events/${'{id}'}`, '/audit/timeline?type=doc&id=7'])('keeps every link of %s on the host the page came from', async (path) => {
    const target = `http://other.example${path.replace('{id}', id)}`;
    const answer = await exchange(t.url, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const found = links(answer);
    expect(found.length).toBeGreaterThan(0);
    for (const link of found) expect(link).toMatch(/^\/audit(\/|\?|$)/);
  });
});
