import type { AuditedCallContext } from 'nestjs-system-audit';
import { Order } from './order.entity.js';

/*
 * What the `@Audited` options of the order routes compute. Every order event uses the
 * target type `order`, so `GET /orders/:id/history` and `GET /api/audit?targetType=order`
 * find them all.
 */

/** The order in the route, `/orders/:id…`: known even when the handler fails. */
export const orderInPath = ({ params }: AuditedCallContext) => ({ type: 'order', id: params['id']! });

/** The order the handler created. */
export const createdOrder = ({ result }: AuditedCallContext) =>
  result instanceof Order ? { type: 'order', id: result.id } : undefined;

/** The `reason` the client sent in the body, if any. */
export const reasonInBody = ({ request }: AuditedCallContext): string | undefined => {
  const body = request?.['body'] as { reason?: unknown } | undefined;
  return typeof body?.reason === 'string' ? body.reason : undefined;
};

/** The amount that was charged or refunded. */
export const amountOf = ({ result }: AuditedCallContext) =>
  result instanceof Order ? { amountCents: result.totalCents, currency: result.currency } : undefined;
