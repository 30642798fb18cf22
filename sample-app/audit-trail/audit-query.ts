import { BadRequestException } from '@nestjs/common';
import type { AuditQuery } from 'nestjs-system-audit';

const FILTERS = ['action', 'actorId', 'targetType', 'targetId', 'source', 'outcome', 'kind', 'from', 'to', 'limit', 'cursor'] as const;

type QueryString = Record<string, string | string[] | undefined>;

/**
 * `GET /api/audit` query parameters as an `AuditService.find()` query. `action` takes a
 * comma-separated list; `targetId` needs `targetType`. Dates, `limit` and `cursor` are
 * checked by `find()` itself (an `InvalidAuditQueryError`, answered with 400).
 */
export function toAuditQuery(query: QueryString): AuditQuery {
  const unknown = Object.keys(query).filter((name) => !(FILTERS as readonly string[]).includes(name));
  if (unknown.length) throw new BadRequestException(`Unknown filter "${unknown[0]}" (known: ${FILTERS.join(', ')})`);
  const value = (name: (typeof FILTERS)[number]): string | undefined => {
    const raw = query[name];
    if (Array.isArray(raw)) throw new BadRequestException(`Give "${name}" once`);
    return raw === undefined || raw === '' ? undefined : raw;
  };
  const oneOf = <T extends string>(name: 'outcome' | 'kind', allowed: readonly T[]): T | undefined => {
    const raw = value(name);
    if (raw !== undefined && !(allowed as readonly string[]).includes(raw)) {
      throw new BadRequestException(`"${name}" must be one of ${allowed.join(', ')}`);
    }
    return raw as T | undefined;
  };

  const result: AuditQuery = {};
  const action = value('action');
  if (action !== undefined) result.action = action.split(',').map((name) => name.trim()).filter(Boolean);
  const targetType = value('targetType');
  const targetId = value('targetId');
  if (targetId !== undefined && targetType === undefined) throw new BadRequestException('"targetId" needs "targetType"');
  if (targetType !== undefined) {
    if (targetId !== undefined) result.target = { type: targetType, id: targetId };
    else result.targetType = targetType;
  }
  const actorId = value('actorId');
  if (actorId !== undefined) result.actorId = actorId;
  const source = value('source');
  if (source !== undefined) result.source = source;
  const outcome = oneOf('outcome', ['success', 'failure'] as const);
  if (outcome !== undefined) result.outcome = outcome;
  const kind = oneOf('kind', ['intent', 'change'] as const);
  if (kind !== undefined) result.kind = kind;
  const from = value('from');
  if (from !== undefined) result.from = from;
  const to = value('to');
  if (to !== undefined) result.to = to;
  const limit = value('limit');
  if (limit !== undefined) result.limit = Number(limit);
  const cursor = value('cursor');
  if (cursor !== undefined) result.cursor = cursor;
  return result;
}
