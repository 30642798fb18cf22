import { InvalidAuditActionError } from '../exceptions/invalid-audit-action.error.js';

/**
 * Dotted names: two or more segments, each starting with a lower-case letter, then
 * letters, digits, `_` or `-` (`order.updated`, `orderItem.created`, `auth.login_failed`).
 */
export const AUDIT_ACTION_PATTERN = /^[a-z][a-zA-Z0-9_-]*(\.[a-z][a-zA-Z0-9_-]*)+$/;
export const MAX_ACTION_LENGTH = 128;

/** `OrderItem` → `orderItem`: an entity's name as the first segment of its actions. */
export const lowerCamel = (name: string): string => name.charAt(0).toLowerCase() + name.slice(1);

export function isValidAuditAction(action: unknown): action is string {
  return typeof action === 'string' && action.length <= MAX_ACTION_LENGTH && AUDIT_ACTION_PATTERN.test(action);
}

export function assertAuditAction(action: unknown): asserts action is string {
  if (!isValidAuditAction(action)) throw new InvalidAuditActionError(action);
}
