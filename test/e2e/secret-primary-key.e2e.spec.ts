import { createHash, randomBytes } from 'node:crypto';
import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, JoinTable, ManyToMany, ManyToOne, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity, AuditSubjectEntity, type AuditLogEntity } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { appsPerTest } from '../support/test-apps.js';
import { databases } from '../support/test-database.js';

/** A password-reset token as the primary key: the kind of id a trail must not hold in the clear. */
@Entity('secret_pk_resets')
class PasswordReset {
  @PrimaryColumn({ type: 'varchar', length: 64 })
  token!: string;

  @Column({ type: 'int' })
  userId!: number;
}

/** A composite key with one secret part. */
@Entity('secret_pk_grants')
class ApiGrant {
  @PrimaryColumn({ type: 'int' })
  userId!: number;

  @PrimaryColumn({ type: 'varchar', length: 64 })
  apiSecret!: string;

  @Column({ type: 'varchar', length: 32 })
  scope!: string;
}

/** Links resets (many-to-many): the links are recorded by the resets' ids. */
@Entity('secret_pk_batches')
class ResetBatch {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 32 })
  label!: string;

  @ManyToMany(() => PasswordReset)
  @JoinTable({ name: 'secret_pk_batch_resets' })
  resets!: PasswordReset[];
}

/** Refers to a reset (to-one): the relation is recorded as the reset's id. */
@Entity('secret_pk_uses')
class ResetUse {
  @PrimaryGeneratedColumn()
  id!: number;

  @ManyToOne(() => PasswordReset, { nullable: false })
  reset!: PasswordReset;
}

const SECRET = 'reset-3f9c1a77e2b04d6b';
const GRANT_SECRET = 'grant-91d0c4e8a7f35b12';
/** What every secret of this spec starts with: never found in anything stored. */
const CLEAR = /reset-3f9c1a77|grant-91d0c4e8/;

@Controller('secret-pk')
class ResetsController {
  private gates: Array<() => void> = [];

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  open(): void {
    for (const gate of this.gates.splice(0)) gate();
  }

  @Post('resets')
  @Audited('password.reset-requested')
  async request(@Body() body: { suffix?: string }): Promise<{ ok: true }> {
    await this.dataSource.getRepository(PasswordReset).save({ token: SECRET + (body.suffix ?? ''), userId: 7 });
    return { ok: true };
  }

  /** Undecorated: a fallback event. */
  @Post('resets/plain')
  async plain(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(PasswordReset).save({ token: `${SECRET}-2`, userId: 8 });
    return { ok: true };
  }

  /** The target given by its clear key: the change of that row is claimed. */
  @Post('resets/use')
  @Audited('password.reset-used', { target: () => ({ type: 'PasswordReset', id: SECRET }) })
  async use(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(PasswordReset).update({ token: SECRET }, { userId: 9 });
    return { ok: true };
  }

  /** Commits a change, then waits for the test to open the gate (the journal holds the change meanwhile). */
  @Post('resets/gated')
  @Audited('password.reset-gated')
  async gated(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(PasswordReset).save({ token: `${SECRET}-3`, userId: 10 });
    await new Promise<void>((resolve) => {
      this.gates.push(resolve);
      setTimeout(resolve, 20_000).unref();
    });
    return { ok: true };
  }

  @Post('grants')
  async grant(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(ApiGrant).save({ userId: 7, apiSecret: GRANT_SECRET, scope: 'read' });
    return { ok: true };
  }

  @Post('batches')
  async batch(): Promise<{ ok: true }> {
    const reset = await this.dataSource.getRepository(PasswordReset).findOneByOrFail({ token: SECRET });
    await this.dataSource.getRepository(ResetBatch).save({ label: 'weekly', resets: [reset] });
    return { ok: true };
  }

  @Post('uses')
  async useRow(): Promise<{ ok: true }> {
    await this.dataSource.getRepository(ResetUse).save({ reset: { token: SECRET } });
    return { ok: true };
  }
}

const entities = [PasswordReset, ApiGrant, ResetBatch, ResetUse];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const post = async (t: TestApp, path: string, body: object = {}): Promise<void> => {
  const response = await t.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  expect(response.status).toBe(201);
};
const byAction = (rows: AuditLogEntity[], action: string): AuditLogEntity => {
  const found = rows.filter((row) => row.action === action);
  expect(found, action).toHaveLength(1);
  return found[0]!;
};
/** The stored id of a secret key value, as documented: SHA-256 of `<entity>.<property>:<value>`, in base64url. */
const digest = (label: string, value: string): string => `sha256:${createHash('sha256').update(`${label}:${value}`, 'utf8').digest('base64url')}`;

describe.each(databases())('a secret-named primary key on %s', (kind) => {
  const apps = appsPerTest();

  it('is stored as a digest wherever an id is stored, and is still found by its clear value', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [ResetsController], entities });

    await post(t, '/secret-pk/resets');
    await post(t, '/secret-pk/resets/plain');
    await post(t, '/secret-pk/resets/use');
    await post(t, '/secret-pk/grants');
    await post(t, '/secret-pk/batches');
    await post(t, '/secret-pk/uses');
    await t.audit.log({ action: 'password.reset-mailed', target: { type: 'PasswordReset', id: SECRET } });

    // While a unit runs, its committed change waits in the journal.
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    const gated = t.request('/secret-pk/resets/gated', { method: 'POST' });
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    const entries = (await journal.find()).map((row) => JSON.stringify(row.entry));
    t.app.get(ResetsController).open();
    expect((await gated).status).toBe(201);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toContain(digest('PasswordReset.token', `${SECRET}-3`));
    expect(entries[0]).not.toMatch(CLEAR);

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind])).toEqual([
      ['password.reset-requested', 'intent'],
      ['passwordReset.created', 'change'],
      ['password.reset-used', 'intent'],
      ['apiGrant.created', 'change'],
      ['resetBatch.created', 'change'],
      ['resetUse.created', 'change'],
      ['password.reset-mailed', 'intent'],
      ['password.reset-gated', 'intent'],
    ]);
    const subjects = await t.dataSource.getRepository(AuditSubjectEntity).find();
    expect(JSON.stringify(rows)).not.toMatch(CLEAR);
    expect(JSON.stringify(subjects)).not.toMatch(CLEAR);

    const stored = digest('PasswordReset.token', SECRET);
    const requested = byAction(rows, 'password.reset-requested');
    expect(requested.changes![0]!.fields['token']).toEqual({ from: null, to: '[REDACTED]' });
    expect([requested.targetType, requested.targetId, requested.changes![0]!.id]).toEqual(['PasswordReset', stored, stored]);
    const fallback = byAction(rows, 'passwordReset.created');
    expect([fallback.targetId, fallback.changes![0]!.id]).toEqual([digest('PasswordReset.token', `${SECRET}-2`), digest('PasswordReset.token', `${SECRET}-2`)]);
    // The clear target of @Audited claimed the change of its row (no fallback event for it).
    const used = byAction(rows, 'password.reset-used');
    expect([used.targetId, used.changes!.map((change) => [change.id, change.fields['userId']])]).toEqual([stored, [[stored, { from: 7, to: 9 }]]]);
    expect(byAction(rows, 'password.reset-mailed').targetId).toBe(stored);
    // A composite key keeps its other parts readable.
    expect(JSON.parse(byAction(rows, 'apiGrant.created').targetId!)).toEqual({ userId: 7, apiSecret: digest('ApiGrant.apiSecret', GRANT_SECRET) });
    expect(byAction(rows, 'resetBatch.created').changes![0]!.fields['resets']).toEqual({ added: [stored], removed: [] });
    expect(byAction(rows, 'resetUse.created').changes![0]!.fields['reset']).toEqual({ from: null, to: stored });

    // Found by the clear value, by the stored one, and by the entity instance.
    const history = ['password.reset-requested', 'password.reset-used', 'resetBatch.created', 'password.reset-mailed'];
    expect((await t.audit.history({ type: 'PasswordReset', id: SECRET })).map((event) => event.action)).toEqual(history);
    expect((await t.audit.history({ type: 'passwordReset', id: stored })).map((event) => event.action)).toEqual(history);
    const instance = Object.assign(new PasswordReset(), { token: SECRET, userId: 9 });
    expect((await t.audit.history(instance)).map((event) => event.action)).toEqual(history);
    expect((await t.audit.find({ target: { type: 'PasswordReset', id: SECRET } })).items.map((event) => event.action)).toEqual([...history].reverse().filter((action) => action !== 'resetBatch.created'));
    const grant = JSON.stringify({ userId: 7, apiSecret: GRANT_SECRET });
    expect((await t.audit.history({ type: 'ApiGrant', id: grant })).map((event) => event.action)).toEqual(['apiGrant.created']);
  });

  it('is an HMAC under the pseudonymisation key when one is configured', async () => {
    await apps.database(kind);
    const key = randomBytes(32);
    const t = await apps.start({ adapter: 'express', controllers: [ResetsController], entities, audit: { pseudonymize: { key } } });
    await post(t, '/secret-pk/resets');
    await post(t, '/secret-pk/grants');

    const rows = await t.rows();
    expect(JSON.stringify(rows)).not.toMatch(CLEAR);
    const requested = byAction(rows, 'password.reset-requested');
    expect(requested.targetId).toMatch(/^hmac:[A-Za-z0-9_-]{43}$/);
    expect(requested.changes![0]!.id).toBe(requested.targetId);
    expect(JSON.parse(byAction(rows, 'apiGrant.created').targetId!).apiSecret).toMatch(/^hmac:[A-Za-z0-9_-]{43}$/);
    expect((await t.audit.history({ type: 'PasswordReset', id: SECRET })).map((event) => event.id)).toEqual([requested.id]);
  });
});
