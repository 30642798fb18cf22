import { Body, Controller, NotFoundException, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { polled } from '../support/within.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { changesOf, CtrItem, startContractApp, type ContractApp } from './contract-app.js';

@Controller('ctr-fc')
class FailClosedController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post('audited')
  @Audited('ctr.fc.audited')
  async audited(@Body() body: { name: string }): Promise<{ id: number }> {
    const item = await this.dataSource.getRepository(CtrItem).save({ name: body.name });
    return { id: item.id };
  }

  @Post('audited-404')
  @Audited('ctr.fc.missing')
  async auditedMissing(@Body() body: { name: string }): Promise<never> {
    await this.dataSource.getRepository(CtrItem).save({ name: body.name });
    throw new NotFoundException('nothing there');
  }

  /** Not audited: its insert is recorded by the safety net. */
  @Post('plain')
  async plain(@Body() body: { name: string }): Promise<{ id: number }> {
    const item = await this.dataSource.getRepository(CtrItem).save({ name: body.name });
    return { id: item.id };
  }
}

/** A trigger that refuses every `audit_log` row whose changes mention "poison". */
async function refusePoisonedEvents(db: TestDatabase, dataSource: DataSource): Promise<() => Promise<void>> {
  if (db.kind === 'sqlite') {
    await dataSource.query(`CREATE TRIGGER ctr_refuse BEFORE INSERT ON audit_log FOR EACH ROW WHEN NEW.changes LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'audit refused'); END`);
    return async () => void (await dataSource.query('DROP TRIGGER ctr_refuse'));
  }
  if (db.kind === 'mariadb') {
    await dataSource.query(
      `CREATE TRIGGER ctr_refuse BEFORE INSERT ON audit_log FOR EACH ROW BEGIN IF NEW.changes LIKE '%poison%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit refused'; END IF; END`,
    );
    return async () => void (await dataSource.query('DROP TRIGGER ctr_refuse'));
  }
  const schema = (db.options as { schema: string }).schema;
  await dataSource.query(
    `CREATE FUNCTION "${schema}".ctr_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.changes::text LIKE '%poison%' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$`,
  );
  await dataSource.query(`CREATE TRIGGER ctr_refuse BEFORE INSERT ON "${schema}".audit_log FOR EACH ROW EXECUTE FUNCTION "${schema}".ctr_refuse()`);
  return async () => void (await dataSource.query(`DROP TRIGGER ctr_refuse ON "${schema}".audit_log`));
}

describe.each(databases())('contract: audit storage refusing the events, on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: ContractApp | undefined;

  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  it('fail-closed: 500 (never a 2xx) for an @Audited route, an undecorated route and a 404; once storage is back, each committed insert is recorded once', { timeout: 60_000 }, async () => {
    db = await createTestDatabase(kind);
    t = await startContractApp({ db, controllers: [FailClosedController] });
    const allow = await refusePoisonedEvents(db, t.dataSource);

    const audited = await t.request('/ctr-fc/audited', { method: 'POST', json: { name: 'poison-audited' } });
    expect(audited.status).toBe(500);
    const body = await audited.text();
    expect(body).not.toContain('poison-audited'); // the handler's own body is dropped
    const plain = await t.request('/ctr-fc/plain', { method: 'POST', json: { name: 'poison-plain' } });
    expect(plain.status).toBe(500);
    const missing = await t.request('/ctr-fc/audited-404', { method: 'POST', json: { name: 'poison-missing' } });
    expect(missing.status).toBe(500);
    expect(t.logger.errors.join('\n')).toMatch(/audit refused/);
    // The writes committed (the journal holds them).
    expect(await t.dataSource.getRepository(CtrItem).countBy([{ name: 'poison-audited' }, { name: 'poison-plain' }, { name: 'poison-missing' }])).toBe(3);
    // A request whose events are storable still passes meanwhile.
    const clean = await t.request('/ctr-fc/audited', { method: 'POST', json: { name: 'clean' } });
    expect(clean.status).toBe(201);

    await allow();
    const rows = await polled(
      () => t!.rows(),
      (all) => changesOf(all, 'CtrItem').filter((change) => String((change.fields['name'] as { to?: unknown }).to).startsWith('poison')).length >= 3,
      30_000,
    );
    const poisoned = rows.filter((row) => changesOf([row], 'CtrItem').some((change) => String((change.fields['name'] as { to?: unknown }).to).startsWith('poison')));
    expect(poisoned.map((row) => [row.action, row.kind]).sort()).toEqual([
      ['ctr.fc.audited', 'intent'],
      ['ctr.fc.missing', 'intent'],
      ['ctrItem.created', 'change'],
    ]);
    expect(['success', 'unknown']).toContain(poisoned.find((row) => row.action === 'ctr.fc.audited')!.outcome);
    expect(['failure', 'unknown']).toContain(poisoned.find((row) => row.action === 'ctr.fc.missing')!.outcome);
    expect(changesOf(rows, 'CtrItem')).toHaveLength(4);
    await polled(() => t!.journal(), (n) => n === 0, 5000);
    expect(await t.journal()).toBe(0);
  });

  it('failOpen: the handler’s own answer, and the error logged', { timeout: 60_000 }, async () => {
    db = await createTestDatabase(kind);
    t = await startContractApp({ db, controllers: [FailClosedController], audit: { failOpen: true } });
    await refusePoisonedEvents(db, t.dataSource);

    const audited = await t.request('/ctr-fc/audited', { method: 'POST', json: { name: 'poison-open' } });
    expect(audited.status).toBe(201);
    expect(await audited.json()).toEqual({ id: expect.any(Number) });
    const missing = await t.request('/ctr-fc/audited-404', { method: 'POST', json: { name: 'poison-open-404' } });
    expect(missing.status).toBe(404);
    expect(t.logger.errors.join('\n')).toMatch(/audit refused/);
  });
});
