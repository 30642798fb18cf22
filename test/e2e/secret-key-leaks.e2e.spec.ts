import { Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, JoinColumn, ManyToOne, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity, AuditSubjectEntity } from '../../lib/index.js';
import { appsPerTest } from '../support/test-apps.js';
import { databases } from '../support/test-database.js';

/** A key named like a secret by its column (`api_key`) only: its property is not. */
@Entity('secret_key_clients')
class ApiClient {
  @PrimaryColumn({ name: 'api_key', type: 'varchar', length: 64 })
  handle!: string;

  @Column({ type: 'varchar', length: 32 })
  label!: string;
}

/** An account with a unique column named like a secret, which a relation refers to. */
@Entity('secret_key_accounts')
class Account {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 64, unique: true })
  apiToken!: string;
}

/** Refers to its account by the account's `apiToken`, not by its primary key. */
@Entity('secret_key_sessions')
class Session {
  @PrimaryGeneratedColumn()
  id!: number;

  @ManyToOne(() => Account, { nullable: false })
  @JoinColumn({ referencedColumnName: 'apiToken' })
  account!: Account;
}

/** A password-reset token as the key (named like a secret by its property). */
@Entity('secret_key_resets')
class PasswordReset {
  @PrimaryColumn({ type: 'varchar', length: 64 })
  token!: string;

  @Column({ type: 'int' })
  userId!: number;
}

const RESET = 'resettoken-0c4f9a21e7';
const SECRET = 'clientkey-5b1e2d9c7a';
const TOKEN = 'accttoken-8e3f0a6c21';

@Controller('secret-keys')
class SecretsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post('clients')
  async client(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(ApiClient).save({ handle: SECRET, label: 'ci' });
    return { ok: true };
  }

  /** The target's type in another case than the entity's name (types are claimed in any case). */
  @Post('resets/use')
  @Audited('password.reset-used', { target: () => ({ type: 'passwordreset', id: RESET }) })
  async use(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(PasswordReset).update({ token: RESET }, { userId: 9 });
    return { ok: true };
  }

  @Post('sessions')
  async session(): Promise<{ ok: true }> {
    const account = await this.dataSource.getRepository(Account).save({ apiToken: TOKEN });
    await this.dataSource.getRepository(Session).save({ account });
    return { ok: true };
  }
}

const entities = [ApiClient, Account, Session, PasswordReset];

describe.each(databases())('secret keys on %s', (kind) => {
  const apps = appsPerTest();

  it('an @Audited target whose type differs from the entity name only in case is digested and claims its change', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [SecretsController], entities });
    await t.seed(() => t.dataSource.getRepository(PasswordReset).save({ token: RESET, userId: 7 }));
    expect((await t.request('/secret-keys/resets/use', { method: 'POST' })).status).toBe(201);
    const rows = await t.rows();
    expect(JSON.stringify(rows)).not.toContain(RESET);
    expect(rows.map((row) => row.action)).toEqual(['password.reset-used']);
    expect(rows[0]!.targetId).toMatch(/^sha256:/);
    expect(rows[0]!.changes!.map((change) => change.id)).toEqual([rows[0]!.targetId]);
  });

  it('a primary key named like a secret by its column name only is never stored in the clear', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [SecretsController], entities });
    expect((await t.request('/secret-keys/clients', { method: 'POST' })).status).toBe(201);
    const rows = await t.rows();
    const created = rows.find((row) => row.action === 'apiClient.created')!;
    expect(created.targetId).toMatch(/^sha256:/);
    // The entity's own field (named by its property, `handle`) is masked as any secret field.
    expect(created.changes![0]!.fields['handle']).toEqual({ from: null, to: '[REDACTED]' });
    expect(JSON.stringify(created.changes)).not.toContain(SECRET);
    const subjects = await t.dataSource.getRepository(AuditSubjectEntity).find();
    const journal = await t.dataSource.getRepository(AuditJournalEntity).find();
    expect(JSON.stringify([rows, subjects, journal])).not.toContain(SECRET);
  });

  it('a relation to a secret-named column that is not the key stores its digest', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [SecretsController], entities });
    expect((await t.request('/secret-keys/sessions', { method: 'POST' })).status).toBe(201);
    const rows = await t.rows();
    const account = rows.find((row) => row.action === 'account.created')!;
    expect(account.changes![0]!.fields['apiToken']).toEqual({ from: null, to: '[REDACTED]' });
    expect(JSON.stringify(account.changes)).not.toContain(TOKEN);
    const session = rows.find((row) => row.action === 'session.created')!;
    expect((session.changes![0]!.fields['account'] as { to: unknown }).to).toMatch(/^sha256:/);
    expect(JSON.stringify(session.changes)).not.toContain(TOKEN);
    const journal = await t.dataSource.getRepository(AuditJournalEntity).find();
    expect(JSON.stringify(journal)).not.toContain(TOKEN);
  });
});
