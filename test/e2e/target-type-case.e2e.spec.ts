import { Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, type AuditEvent } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { appsPerTest } from '../support/test-apps.js';
import { databases } from '../support/test-database.js';

@Entity('type_case_resets')
class PasswordReset {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'int' })
  userId!: number;
}

/** A key named like a secret: its id is stored digested, whatever case the type is given in. */
@Entity('type_case_tokens')
class ResetToken {
  @PrimaryColumn({ type: 'varchar', length: 64 })
  token!: string;

  @Column({ type: 'int' })
  uses!: number;
}

const TOKEN = 'rtok-6c0e8a3f5d21b794';

@Controller('type-case')
class ResetsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Two resets changed, no target: the event is found through the subject index only. */
  @Post('resets/expire')
  @Audited('password.resets-expired')
  async expire(): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      for (const reset of await manager.find(PasswordReset)) await manager.save(PasswordReset, { ...reset, userId: reset.userId + 100 });
    });
    return { ok: true };
  }
}

const entities = [PasswordReset, ResetToken];
const actions = (events: readonly AuditEvent[]): string[] => events.map((event) => event.action).sort();

/** Two resets (ids 1 and 2), a manual event about reset 1 typed in lower camel case, and the undecorated update of reset 1. */
async function resets(t: TestApp): Promise<void> {
  await t.seed(() => t.dataSource.getRepository(PasswordReset).save([{ userId: 1 }, { userId: 2 }]));
  await t.audit.log({ action: 'password.reset-mailed', target: { type: 'passwordReset', id: '1' } });
  await t.dataSource.getRepository(PasswordReset).update({ id: 1 }, { userId: 7 });
}

describe.each(databases())('a target type in another case than stored on %s', (kind) => {
  const apps = appsPerTest();

  it('history() finds the events of an entity given in any case (targets and subjects)', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [ResetsController], entities });
    await resets(t);
    expect((await t.request('/type-case/resets/expire', { method: 'POST' })).status).toBe(201);
    const expected = ['password.reset-mailed', 'password.resets-expired', 'passwordReset.updated'];
    expect(actions(await t.audit.history({ type: 'PasswordReset', id: '1' }))).toEqual(expected);
    expect(actions(await t.audit.history({ type: 'passwordreset', id: '1' }))).toEqual(expected);
    expect(actions(await t.audit.history({ type: 'PASSWORDRESET', id: 1 }))).toEqual(expected);
  });

  it('find({ target }) and find({ targetType }) find them too', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', entities });
    await resets(t);
    const expected = ['password.reset-mailed', 'passwordReset.updated'];
    expect(actions((await t.audit.find({ target: { type: 'passwordreset', id: '1' } })).items)).toEqual(expected);
    expect(actions((await t.audit.find({ targetType: 'PASSWORDRESET' })).items)).toEqual(expected);
    expect(actions((await t.audit.find({ targetType: 'passwordReset' })).items)).toEqual(expected);
  });

  it('finds an entity with a secret key by its clear id, the type in any case', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', entities });
    await t.dataSource.getRepository(ResetToken).save({ token: TOKEN, uses: 0 });
    const [row] = await t.rows();
    expect(row!.targetType).toBe('ResetToken');
    expect(row!.targetId).toMatch(/^sha256:/);
    expect(actions(await t.audit.history({ type: 'resettoken', id: TOKEN }))).toEqual(['resetToken.created']);
    expect(actions((await t.audit.find({ target: { type: 'RESETTOKEN', id: TOKEN } })).items)).toEqual(['resetToken.created']);
  });
});
