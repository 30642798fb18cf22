import { describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditRequest } from '../../lib/index.js';
import { crashedRequest } from '../support/crashed-request.js';
import { databases } from '../support/test-database.js';

/** The actor resolver of docs/configuration.md: it only reads `request.user`, like the default one. */
const actor = (request: AuditRequest) => {
  const user = (request as { user?: { id: number; email: string } }).user;
  return user ? { type: 'user', id: String(user.id), display: user.email } : undefined;
};

describe.each(databases())('recovery of a crashed request’s unit with an actor resolver of the app’s own, on %s', (kind) => {
  const crashed = crashedRequest(kind, actor, 'crashed');

  it('the recovered event names alice, as the journal could (her user was known at the commit)', async () => {
    await crashed.recover();
    const { dead, requestId } = crashed;

    const rows = await dead.dataSource.getRepository(AuditLogEntity).find({ where: { requestId } });
    expect(rows.map((row) => ({ action: row.action, outcome: row.outcome, actorType: row.actorType, actorId: row.actorId }))).toEqual([
      { action: 'order.repriced', outcome: 'unknown', actorType: 'user', actorId: '1' },
    ]);
  });
});
