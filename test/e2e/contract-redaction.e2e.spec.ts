import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity, AuditService } from '../../lib/index.js';
import { polled } from '../support/within.js';
import { databases } from '../support/test-database.js';
import { changesOf, contractAppFor, type ContractApp } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const SECRET = 'hunter2-s3cr3t';

@Entity('ctr_account')
class CtrAccount {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 80 })
  email!: string;

  @Column({ type: 'varchar', length: 80 })
  passwordHash!: string;

  @Column({ name: 'api_token', type: 'varchar', length: 80 })
  handle!: string;
}

@Controller('ctr-redact')
class RedactionController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  /** Saves an account with secrets, logs a deep context, then holds the answer a while (its journal row meanwhile). */
  @Post()
  @Audited('ctr.redact.signup')
  async signup(@Body() body: { email: string; password: string; hold: number }): Promise<{ ok: true }> {
    await this.dataSource.transaction((manager) =>
      manager.save(CtrAccount, manager.create(CtrAccount, { email: body.email, passwordHash: `${body.password}-hash`, handle: `${body.password}-handle` })),
    );
    await this.audit.log({
      action: 'ctr.redact.noted',
      context: { deep: { deeper: [{ apiKey: SECRET, ok: 'visible' }], Authorization: `Bearer ${SECRET}` } },
    });
    await sleep(body.hold);
    return { ok: true };
  }
}

describe.each(databases())('contract: secrets are masked everywhere before anything is written, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [RedactionController], entities: [CtrAccount], audit: { recordBody: true } }, (app) => (t = app));

  it('the journal row in flight, the event’s changes, its context, its recorded body: no secret in clear', { timeout: 20_000 }, async () => {
    const pending = t.request('/ctr-redact', { method: 'POST', json: { email: 'a@example.com', password: SECRET, hold: 1500 } });
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    const inFlight = await polled(() => journal.find(), (rows) => rows.length > 0, 5000);
    expect(inFlight.length).toBeGreaterThan(0);
    expect(JSON.stringify(inFlight)).not.toContain(SECRET);
    const response = await pending;
    expect(response.status).toBe(201);

    const rows = await t.rows();
    expect(JSON.stringify(rows)).not.toContain(SECRET);
    const signup = rows.find((row) => row.action === 'ctr.redact.signup')!;
    expect(changesOf([signup], 'CtrAccount')[0]!.fields).toMatchObject({
      email: { from: null, to: 'a@example.com' },
      passwordHash: { from: null, to: '[REDACTED]' },
      handle: { from: null, to: '[REDACTED]' },
    });
    expect(signup.context).toMatchObject({ body: { email: 'a@example.com', password: '[REDACTED]' } });
    const noted = rows.find((row) => row.action === 'ctr.redact.noted')!;
    expect(noted.context).toEqual({ deep: { deeper: [{ apiKey: '[REDACTED]', ok: 'visible' }], Authorization: '[REDACTED]' } });
    expect(await t.journal()).toBe(0);
  });
});
