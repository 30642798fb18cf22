import { randomBytes } from 'node:crypto';
import type { AuditLogEntity, AuditLogInput } from 'nestjs-system-audit';

/**
 * The `i`-th event of the writer benchmark as `AuditService.log()` input: an
 * audit-sized event (actor, target, a small context and a reason).
 */
export function auditInput(i: number): AuditLogInput {
  const user = i % 100;
  return {
    action: 'order.updated',
    actor: { type: 'user', id: `user-${user}`, display: `user${user}@example.com` },
    target: { type: 'order', id: String(i + 1) },
    context: { amountCents: 1000 + i, currency: 'EUR', channel: 'web' },
    reason: 'customer changed the delivery address',
  };
}

/** The same event as the row `log()` stores outside a unit of work, for the other writers. */
export function auditRow(i: number): AuditLogEntity {
  const input = auditInput(i);
  return {
    id: uuidv7(),
    occurredAt: new Date(),
    action: input.action,
    outcome: 'success',
    kind: 'intent',
    actorType: input.actor!.type,
    actorId: input.actor!.id === undefined ? null : String(input.actor!.id),
    actorDisplay: input.actor!.display ?? null,
    source: 'system',
    ip: null,
    userAgent: null,
    method: null,
    route: null,
    path: null,
    requestId: null,
    targetType: 'order',
    targetId: String(i + 1),
    changes: [],
    context: input.context ?? null,
    reason: input.reason ?? null,
    error: null,
    seq: null,
  };
}

let lastMs = -1;
let sequence = 0;

/** A time-ordered UUID v7, as the module generates (the primary key index sees the same pattern). */
export function uuidv7(): string {
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    sequence = 0;
  } else if (++sequence > 0xfff) {
    lastMs++;
    sequence = 0;
  }
  const bytes = randomBytes(16);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (sequence >>> 8);
  bytes[7] = sequence & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
