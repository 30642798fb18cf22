import { SetMetadata } from '@nestjs/common';
import { AUDIT_SOURCE_METADATA } from '../audit.constants.js';

const LABEL = /^[a-z][a-z0-9_-]{0,63}$/;

/**
 * Names the interface a controller (or one handler) serves, overriding the transport's
 * source: `@AuditSource('admin')` on an admin controller records `source: 'admin'`.
 *
 * @throws TypeError at class definition when the label is not lower-case (letters, digits, `_`, `-`).
 */
export function AuditSource(label: string): MethodDecorator & ClassDecorator {
  if (typeof label !== 'string' || !LABEL.test(label)) {
    throw new TypeError(`Invalid audit source ${JSON.stringify(label)}: use a short lower-case label such as "admin"`);
  }
  return SetMetadata(AUDIT_SOURCE_METADATA, label);
}
