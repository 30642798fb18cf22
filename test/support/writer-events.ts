import { randomUUID } from 'node:crypto';
import { AuditLogEntity } from '../../lib/index.js';

/** An event of `action` for the writer's tests (each test counts its own action), with every column set. */
export function writerEvent(action: string, overrides: Partial<AuditLogEntity> = {}): AuditLogEntity {
  return Object.assign(new AuditLogEntity(), {
    id: randomUUID(),
    occurredAt: new Date(),
    action,
    outcome: 'success',
    kind: 'intent',
    actorType: 'user',
    actorId: '42',
    actorDisplay: 'ada@example.com',
    source: 'http',
    ip: '127.0.0.1',
    userAgent: 'vitest',
    method: 'POST',
    route: '/orders/:id',
    path: '/orders/7',
    requestId: randomUUID(),
    targetType: 'Order',
    targetId: '7',
    changes: [{ field: 'status', from: 'new', to: 'paid' }],
    context: { note: 'written by the writer spec' },
    reason: null,
    error: null,
    ...overrides,
  });
}
