import type { AuditService } from '../../lib/index.js';

/** Logs `count` events through `audit`, each about its own order (`${label}-1`, …), one after the other; returns their ids. */
export async function logNotes(audit: AuditService, count: number, label: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    ids.push(await audit.log({ action: 'order.noted', reason: `${label} ${i + 1}`, target: { type: 'order', id: `${label}-${i + 1}` } }));
  }
  return ids;
}
