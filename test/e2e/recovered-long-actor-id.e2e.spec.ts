import { describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditService, type AuditRequest } from '../../lib/index.js';
import { Order } from '../app/order.entity.js';
import { crashedRequest } from '../support/crashed-request.js';
import { databases } from '../support/test-database.js';

/** An actor id longer than `audit_log.actor_id` holds (an external identity's subject, say). */
const longId = (id: number): string => `tenant-${'t'.repeat(300)}-${id}`;

/** An actor resolver of the app's own, giving ids past 255 characters. */
const actor = (request: AuditRequest) => {
  const user = (request as { user?: { id: number; email: string } }).user;
  return user ? { type: 'user', id: longId(user.id), display: user.email } : undefined;
};

describe.each(databases())('recovery of a crashed request’s unit whose actor id is past 255 characters, on %s', (kind) => {
  const crashed = crashedRequest(kind, actor, 'crashed-long');

  it('the recovered event stores the actor id as a direct write would, and find({ actorId }) with the id given finds it', async () => {
    const rescuer = await crashed.recover();
    const { dead, requestId } = crashed;

    const rows = await dead.dataSource.getRepository(AuditLogEntity).find({ where: { requestId } });
    expect(rows.map((row) => [row.action, row.outcome, row.actorType])).toEqual([['order.repriced', 'unknown', 'user']]);
    expect(rows[0]!.actorId!.length).toBeLessThanOrEqual(255);
    expect(rows[0]!.actorId).toMatch(/^tenant-t+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);

    const audit = rescuer.app.get(AuditService);
    const found = await audit.find({ actorType: 'user', actorId: longId(1), requestId });
    expect(found.items.map((event) => event.action)).toEqual(['order.repriced']);

    // The same actor's event written directly (no crash) stores the same id.
    const orderId = (await rescuer.seed(() => rescuer.dataSource.getRepository(Order).save({ status: 'new', total: 5 }))).id;
    const response = await rescuer.request(`/orders/${orderId}`, { method: 'PATCH', json: { status: 'paid' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(200);
    const direct = (await rescuer.rows()).filter((row) => row.requestId !== requestId && row.actorId?.startsWith('tenant-'));
    expect(direct.length).toBeGreaterThan(0);
    expect(direct.map((row) => row.actorId)).toEqual(direct.map(() => rows[0]!.actorId));
  });
});
