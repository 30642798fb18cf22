import { Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, JoinColumn, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity, AuditSubjectEntity, type AuditLogEntity } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { appsPerTest } from '../support/test-apps.js';
import { databases } from '../support/test-database.js';

/** Held inside a vault under the `credentials` prefix: its column is `credentialsCode`, its field `wallet.code`. */
class Wallet {
  @Column({ type: 'varchar', length: 64, nullable: true })
  code!: string | null;

  /** Secret by its own property name (a name of the built-in list), inside the embedded (field `wallet.pin`). */
  @Column({ type: 'varchar', length: 16, nullable: true })
  pin!: string | null;
}

/** Columns named like secrets by their database name only, by their property only, and by a configured name. */
@Entity('secret_col_vaults')
class Vault {
  @PrimaryGeneratedColumn()
  id!: number;

  /** Secret by its column name only. */
  @Column({ name: 'api_token', type: 'varchar', length: 64, unique: true })
  handle!: string;

  /** Secret by its property name only. */
  @Column({ name: 'hint_text', type: 'varchar', length: 64 })
  passwordHint!: string;

  /** Secret by a name of the `redact` option, given as its column name. */
  @Column({ name: 'tax_ref', type: 'varchar', length: 64 })
  reference!: string;

  /** An embedded value whose column is secret by its prefix. */
  @Column(() => Wallet, { prefix: 'credentials' })
  wallet!: Wallet;

  @Column({ type: 'varchar', length: 32 })
  note!: string;
}

/** Refers to a vault by its column secret by database name only (not its key). */
@Entity('secret_col_leases')
class Lease {
  @PrimaryGeneratedColumn()
  id!: number;

  @ManyToOne(() => Vault, { nullable: false })
  @JoinColumn({ name: 'vault_handle', referencedColumnName: 'handle' })
  vault!: Vault;

  /** A join column secret by its own database name: its field is masked as a column's would be. */
  @ManyToOne(() => Vault, { nullable: true })
  @JoinColumn({ name: 'token_vault_id' })
  backup!: Vault | null;
}

const HANDLE = 'hndl-7d1e0c93b5';
const HANDLE_2 = 'hndl-2f84a6c0d1';
const HINT = 'hint-a93c5e1f07';
const TAX = 'taxr-51b7e2d8c4';
const CODE = 'wcod-c08f3b6a92';
const CODE_2 = 'wcod-4e6d19f2b7';
const PIN = 'wpin-3391';
/** What every secret of this spec starts with: never found in anything stored. */
const CLEAR = /hndl-|hint-|taxr-|wcod-|wpin-/;

/** A secret of this spec found in `text`, with what surrounds it (`undefined`: none is). */
const clearIn = (text: string): string | undefined => new RegExp(`.{0,80}(?:${CLEAR.source}).{0,20}`).exec(text)?.[0];

@Controller('secret-columns')
class VaultsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** A vault and a lease on it, in one unit (its changes go through the journal). */
  @Post('vaults')
  @Audited('vault.opened')
  async open(): Promise<{ ok: true }> {
    const vault = await this.dataSource
      .getRepository(Vault)
      .save({ handle: HANDLE, passwordHint: HINT, reference: TAX, wallet: { code: CODE, pin: PIN }, note: 'first' });
    await this.dataSource.getRepository(Lease).save({ vault, backup: vault });
    return { ok: true };
  }

  /** Undecorated: fallback events. */
  @Post('vaults/rotate')
  async rotate(): Promise<{ ok: true }> {
    const vaults = this.dataSource.getRepository(Vault);
    const vault = await vaults.findOneByOrFail({ handle: HANDLE });
    await vaults.save({ ...vault, handle: HANDLE_2, wallet: { code: CODE_2 }, note: 'rotated' });
    return { ok: true };
  }

  @Post('vaults/remove')
  async remove(): Promise<{ ok: true }> {
    const leases = this.dataSource.getRepository(Lease);
    await leases.remove(await leases.find());
    const vaults = this.dataSource.getRepository(Vault);
    await vaults.remove(await vaults.find());
    return { ok: true };
  }
}

const entities = [Vault, Lease];
const audit = { redact: ['taxRef'] };

/** The change of `entity` in `row`. */
const changeOf = (row: AuditLogEntity | undefined, entity: string): NonNullable<AuditLogEntity['changes']>[number] => {
  const change = row?.changes?.find((candidate) => candidate.entity === entity);
  if (!change) throw new Error(`no ${entity} change in ${JSON.stringify(row)}`);
  return change;
};

/** Everything stored that may hold a change's values. */
async function stored(t: TestApp): Promise<string> {
  const rows = await t.rows();
  const journal = await t.dataSource.getRepository(AuditJournalEntity).find();
  const subjects = await t.dataSource.getRepository(AuditSubjectEntity).find();
  return JSON.stringify([rows, journal, subjects]);
}

describe.each(databases())('columns named like secrets on %s', (kind) => {
  const apps = appsPerTest();

  it('masks a column secret by its database name as one secret by its property (insert, in a unit)', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [VaultsController], entities, audit });
    expect((await t.request('/secret-columns/vaults', { method: 'POST' })).status).toBe(201);
    const rows = await t.rows();
    expect(rows.map((row) => row.action)).toEqual(['vault.opened']);
    const fields = changeOf(rows[0], 'Vault').fields;
    expect(fields['handle']).toEqual({ from: null, to: '[REDACTED]' });
    expect(fields['passwordHint']).toEqual({ from: null, to: '[REDACTED]' });
    expect(fields['reference']).toEqual({ from: null, to: '[REDACTED]' });
    expect(fields['wallet.code']).toEqual({ from: null, to: '[REDACTED]' });
    expect(fields['wallet.pin']).toEqual({ from: null, to: '[REDACTED]' });
    expect(fields['note']).toEqual({ from: null, to: 'first' });
    // The lease refers to the vault by its secret column: that value's digest, as for a key.
    const lease = changeOf(rows[0], 'Lease').fields;
    expect((lease['vault'] as { to: unknown }).to).toMatch(/^sha256:/);
    expect(lease['backup']).toEqual({ from: null, to: '[REDACTED]' });
    expect(clearIn(await stored(t))).toBeUndefined();
  });

  it('masks both sides of an update and the before values of a delete (fallback events)', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [VaultsController], entities, audit });
    await t.seed(() =>
      t.dataSource.getRepository(Vault).save({ handle: HANDLE, passwordHint: HINT, reference: TAX, wallet: { code: CODE }, note: 'first' }),
    );
    expect((await t.request('/secret-columns/vaults/rotate', { method: 'POST' })).status).toBe(201);
    const updated = (await t.rows()).find((row) => row.action === 'vault.updated');
    expect(changeOf(updated, 'Vault').fields).toEqual({
      handle: { from: '[REDACTED]', to: '[REDACTED]' },
      'wallet.code': { from: '[REDACTED]', to: '[REDACTED]' },
      note: { from: 'first', to: 'rotated' },
    });
    expect(clearIn(await stored(t))).toBeUndefined();

    await t.clearAudit();
    expect((await t.request('/secret-columns/vaults/remove', { method: 'POST' })).status).toBe(201);
    const deleted = (await t.rows()).find((row) => row.action === 'vault.deleted');
    const fields = changeOf(deleted, 'Vault').fields;
    expect(fields['handle']).toEqual({ from: '[REDACTED]', to: null });
    expect(fields['reference']).toEqual({ from: '[REDACTED]', to: null });
    expect(fields['wallet.code']).toEqual({ from: '[REDACTED]', to: null });
    expect(clearIn(await stored(t))).toBeUndefined();
  });

  it('masks such columns in an update by criteria past maxCriteriaRows (its partial change holds the values set)', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', entities, audit });
    await t.seed(() =>
      t.dataSource
        .createQueryBuilder()
        .insert()
        .into(Vault)
        .values(Array.from({ length: 1001 }, (_, i) => ({ handle: `h${i}`, passwordHint: 'x', reference: 'r', wallet: { code: null }, note: 'n' })))
        .execute(),
    );
    await t.dataSource.getRepository(Vault).update({ note: 'n' }, { reference: TAX, wallet: { code: CODE }, note: 'bulk' });
    const rows = await t.rows();
    const partial = rows.map((row) => row.changes?.find((change) => change.entity === 'Vault' && change.partial)).find(Boolean);
    // An embedded value set as an object is recorded by its columns' fields, as a full capture records them.
    expect(partial?.fields).toEqual({ reference: { to: '[REDACTED]' }, 'wallet.code': { to: '[REDACTED]' }, note: { to: 'bulk' } });
    expect(clearIn(JSON.stringify(rows))).toBeUndefined();
  });

  it('masks them in the changes given to log()', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', entities, audit });
    await t.audit.log({
      action: 'vault.imported',
      changes: [{ entity: 'Vault', id: '1', operation: 'insert', fields: { handle: { from: null, to: HANDLE }, 'wallet.code': { from: null, to: CODE } } }],
    });
    const [row] = await t.rows();
    expect(changeOf(row, 'Vault').fields).toEqual({ handle: { from: null, to: '[REDACTED]' }, 'wallet.code': { from: null, to: '[REDACTED]' } });
  });

});
