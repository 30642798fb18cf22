import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

// verify's `unsequenced` count is read after the walk of the events without a seq; when
// the problem report fills up (10 000 problems) that walk is cut short, and the count is
// of the rows read before the cut, not of the log.
const LIMIT = 10_000;
describe.each(databases().filter((kind) => kind !== 'mariadb'))('unsequenced count when the report is full on %s', (kind) => {
  const dir = mkdtempSync(join(tmpdir(), 'rv-unsequenced-'));
  const keyFile = join(dir, 'audit.pem');
  writeFileSync(keyFile, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
  let db: TestDatabase;
  let url: string[];
  let app: TestApp | undefined;

  beforeAll(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, 'audit.sqlite')));
    app = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts every event without a seq that can be sequenced, even past a full report', async () => {
    // Three events kept without integrity (no seq).
    for (const id of ['1', '2', '3']) await app!.audit.log({ action: 'rv.noted', target: { type: 'rv', id } });
    const [template] = await app!.rows();
    const { id: _id, seq: _seq, ...rest } = template!;
    // LIMIT + 1 rows without a seq that cannot be sequenced (a number past the double range), all ids before the three.
    const repository = app!.dataSource.getRepository(AuditLogEntity);
    for (let start = 0; start <= LIMIT; start += 500) {
      const values = [];
      for (let i = start; i < Math.min(start + 500, LIMIT + 1); i++) {
        values.push({ ...rest, id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, seq: null, context: () => `'{"rv":1e999}'` });
      }
      await repository.createQueryBuilder().insert().values(values as never).execute();
    }
    expect(await repository.createQueryBuilder('e').where('e.seq IS NULL').andWhere('e.id > :last', { last: '00000000-0000-4000-8000-999999999999' }).getCount()).toBe(3);
    await app!.close();
    app = undefined;

    const run = await cli('verify', ...url, '--public-key', keyFile);
    expect(run.code).toBe(1);
    const summary = run.stdout.trimEnd().split('\n').at(-1);
    expect(summary).toMatch(/^FAILED: 10000 problems \(more were found than listed\)/);
    expect(summary).toContain('3 events without a seq, not checked');
  });
});
