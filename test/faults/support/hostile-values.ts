import { ACTOR_HEADER } from '../actor-header.guard.js';
import type { HostileItemBody } from '../fault-items.controller.js';
import type { FaultDatabaseKind } from './fault-database.js';
import type { RequestPicker } from './load-client.js';

const MEGABYTE = 1024 * 1024;

/** Strings that have broken audit writes: NUL bytes, lone surrogates, megabytes, and all at once. */
export const HOSTILE_STRINGS: ReadonlyArray<{ name: string; value: string }> = [
  { name: 'nul', value: 'nul\u0000byte\u0000' },
  { name: 'surrogates', value: 'lone \uD800 high, lone \uDFFF low, reversed \uDC00\uD800' },
  { name: 'megabyte', value: 'm'.repeat(MEGABYTE) },
  // Three UTF-8 bytes per '€': a bound in characters is not a bound in bytes.
  { name: 'all', value: `\u0000\uDBFF${'€'.repeat(Math.floor(MEGABYTE / 3))}\u0000` },
];

/** JSON with every non-ASCII character escaped, so that it can travel in an HTTP header. */
export const asciiJson = (value: unknown): string =>
  JSON.stringify(value).replace(/[\u007f-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The hostile string made storable in the app's own column, so that the app's write
 * commits and only the audit trail has to cope: PostgreSQL `text` holds no NUL byte;
 * MariaDB's `json` check rejects escaped lone surrogates. Everything else is kept.
 */
function forAppColumn(kind: FaultDatabaseKind, column: 'note' | 'payload', value: string): string {
  if (kind === 'postgres' && column === 'note') return value.replaceAll('\u0000', '');
  if (kind === 'mariadb' && column === 'payload') return value.replace(LONE_SURROGATE, '\uFFFD');
  return value;
}

/**
 * Calls of `POST /items/hostile`: the reason, the actor's display name (in the `x-actor`
 * header), the target id and the changed fields `note` and `payload` each carry one of
 * the hostile strings, rotated so that every field meets every string.
 */
export function hostileMix(kind: FaultDatabaseKind): RequestPicker {
  let call = 0;
  const pick = (offset: number) => HOSTILE_STRINGS[(call + offset) % HOSTILE_STRINGS.length]!;
  return () => {
    call++;
    const reason = pick(0);
    const display = pick(1);
    const target = pick(2);
    const changed = pick(3);
    const body: HostileItemBody = {
      reason: reason.value,
      targetId: target.value,
      note: forAppColumn(kind, 'note', changed.value),
      payload: forAppColumn(kind, 'payload', pick(0).value),
    };
    return {
      method: 'POST',
      path: '/items/hostile',
      body,
      headers: { [ACTOR_HEADER]: asciiJson({ id: `hostile-${display.name}`, display: display.value }) },
      action: 'item.hostile',
      operation: `hostile(reason=${reason.name},actor=${display.name},target=${target.name},note=${changed.name})`,
    };
  };
}
