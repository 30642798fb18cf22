import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import pg from 'pg';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditService, type AuditEvent } from 'nestjs-system-audit';
import { POSTGRES } from '../support/database-probe.js';
import { databases } from '../support/test-database.js';

// The README's quick start, taken from its code blocks as a reader would copy them,
// type-checked and booted as a real Nest app; the README's sample outputs are compared
// with what that app answers and stores. A README edit that breaks the quick start, or
// an outdated sample output, fails here.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const FILES = ['src/order.entity.ts', 'src/auth.guard.ts', 'src/orders.controller.ts', 'src/app.module.ts', 'src/main.ts'];

/** The README's ```ts blocks that start with a `// src/…` file-name comment, by file name. */
function quickStartFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const match of README.matchAll(/^```ts\n\/\/ (src\/[\w.-]+\.ts)\n([\s\S]*?)^```$/gm)) files.set(match[1]!, match[2]!);
  return files;
}

/** The lines of a README code block that follows `marker` (exclusive of the fences). */
function blockAfter(marker: string, fence: string): string[] {
  const start = README.indexOf(marker);
  expect(start, `README.md has no "${marker}"`).toBeGreaterThanOrEqual(0);
  const open = README.indexOf(`${fence}\n`, start);
  const close = README.indexOf('\n```', open + fence.length);
  return README.slice(open + fence.length + 1, close).split('\n');
}

/** The quick start's console block: each command's output (the lines not part of a `$` command). */
function sampleResponses(): string[] {
  return blockAfter('Start it (`DATABASE_URL` overrides', '```console').filter((line) => !line.startsWith('$') && !line.startsWith('    '));
}

/** The psql output of the quick start: one row per event, columns trimmed. */
function sampleRows(): string[][] {
  return blockAfter('Four requests, four events', '```console')
    .filter((line) => /^ order\./.test(line))
    .map((line) => line.split('|').map((cell) => cell.trim()));
}

const CONNECTION = `      type: 'postgres',
      url: process.env.DATABASE_URL ?? 'postgres://postgres@localhost:5432/shop',
`;

/** Writes the quick start into a folder of its own, as a new project would hold it. */
function writeProject(files: Map<string, string>, swap?: (file: string, source: string) => string): string {
  const dir = mkdtempSync(join(tmpdir(), 'audit-quick-start-'));
  mkdirSync(join(dir, 'src'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'shop', private: true, type: 'module' }));
  // What a Nest project's tsconfig has for decorators (the test's compiler reads it too).
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { experimentalDecorators: true, emitDecoratorMetadata: true } }));
  for (const [file, source] of files) writeFileSync(join(dir, file), swap ? swap(file, source) : source);
  return dir;
}

describe('README quick start', () => {
  const files = quickStartFiles();

  it('has the five files, each importing what it uses', () => {
    expect([...files.keys()].sort()).toEqual([...FILES].sort());
    expect(files.get('src/app.module.ts')).toContain(CONNECTION);
    // Its PostgreSQL database is its own, not a shared one.
    expect(/localhost:5432\/(\w+)'/.exec(files.get('src/app.module.ts')!)?.[1]).not.toMatch(/^(test|postgres)$/);
  });

  it('type-checks with strict settings (no missing import, no type error)', () => {
    const dir = writeProject(files);
    try {
      const program = ts.createProgram(
        FILES.map((file) => join(dir, file)),
        {
          target: ts.ScriptTarget.ES2022,
          module: ts.ModuleKind.NodeNext,
          moduleResolution: ts.ModuleResolutionKind.NodeNext,
          strict: true,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          skipLibCheck: true,
          noEmit: true,
          types: ['node'],
          paths: { 'nestjs-system-audit': [join(ROOT, 'lib', 'index.ts')] },
        },
      );
      const problems = ts
        .getPreEmitDiagnostics(program)
        .map((diagnostic) => `${diagnostic.file?.fileName.replace(dir, '') ?? ''}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
      expect(problems).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  const kinds = databases().filter((kind) => kind !== 'mariadb');
  describe.each(kinds)('runs on %s', (kind) => {
    let dir: string;
    let app: INestApplication;
    let url: string;
    let dropDatabase: (() => Promise<void>) | undefined;

    beforeAll(async () => {
      if (kind === 'postgres') {
        // The README's app module unchanged, pointed at a database of its own through DATABASE_URL.
        const name = `quick_start_${randomBytes(4).toString('hex')}`;
        const admin = new pg.Client(POSTGRES);
        await admin.connect();
        await admin.query(`CREATE DATABASE "${name}"`);
        await admin.end();
        dropDatabase = async () => {
          const client = new pg.Client(POSTGRES);
          await client.connect();
          await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
          await client.end();
        };
        const credentials = `${encodeURIComponent(POSTGRES.user)}${POSTGRES.password ? `:${encodeURIComponent(POSTGRES.password)}` : ''}`;
        process.env['DATABASE_URL'] = `postgres://${credentials}@${POSTGRES.host}:${POSTGRES.port}/${name}`;
        dir = writeProject(files);
      } else {
        dir = writeProject(files, (file, source) =>
          file === 'src/app.module.ts' ? source.replace(CONNECTION, "      type: 'better-sqlite3',\n      database: ':memory:',\n") : source,
        );
      }
      try {
        const { AppModule } = (await import(pathToFileURL(join(dir, 'src', 'app.module.ts')).href)) as { AppModule: new () => unknown };
        app = await NestFactory.create(AppModule, { logger: ['error'] });
        await app.listen(0, '127.0.0.1');
        url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
      } finally {
        delete process.env['DATABASE_URL'];
      }
    });

    afterAll(async () => {
      await app?.close();
      await dropDatabase?.();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('answers the README requests with the README outputs, and stores the README events', async () => {
      const send = async (method: string, path: string, body: unknown, token?: string): Promise<string> => {
        const response = await fetch(`${url}${path}`, {
          method,
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify(body),
        });
        return response.text();
      };
      const responses = [
        await send('POST', '/orders', { description: 'Espresso beans, 1 kg' }, 'ada-token'),
        await send('PATCH', '/orders/1', { status: 'paid' }, 'ada-token'),
        await send('PATCH', '/orders/1', { status: 'paid' }),
        await send('PATCH', '/orders/2', { status: 'paid' }, 'grace-token'),
      ];
      expect(responses).toEqual(sampleResponses());

      const { items } = await app.get(AuditService).find({});
      const events = [...items].reverse();
      const rows = events.map((event) => [
        event.action,
        event.outcome,
        event.actor.type,
        event.actor.id ?? '',
        event.target?.id ?? '',
        event.error ? JSON.stringify(event.error) : '',
      ]);
      expect(rows).toEqual(sampleRows());

      // "What a record looks like": the PATCH's event, but for what differs on every run.
      const record = JSON.parse(blockAfter('<!-- quick-start-record -->', '```json').join('\n')) as AuditEvent;
      const varying = (event: AuditEvent) => ({
        ...event,
        id: '<id>',
        occurredAt: '<time>',
        request: { ...event.request, requestId: '<request id>', userAgent: '<user agent>' },
      });
      expect(JSON.parse(JSON.stringify(varying(events[1]!)))).toEqual(varying(record));
    });
  });
});
