import { randomUUID } from 'node:crypto';
import {
  EventSubscriber,
  type EntityManager,
  type EntityMetadata,
  type EntitySubscriberInterface,
  type InsertEvent,
  type ObjectLiteral,
  type RemoveEvent,
  type UpdateEvent,
} from 'typeorm';
import { AuditLogEntity, type AuditChangeOperation, type AuditFieldChange } from 'nestjs-system-audit';

const VERBS = { insert: 'created', update: 'updated', delete: 'deleted' } as const;

/**
 * The comparison point: audit the way typical hook-based libraries do. Every entity
 * change saves one audit row with `repository.save()` from inside the change's own
 * transaction — no request context, no batching, no net diffs. (TypeORM attaches it
 * only to data sources that list it in `subscribers`.)
 */
@EventSubscriber()
export class NaiveAuditSubscriber implements EntitySubscriberInterface {
  afterInsert(event: InsertEvent<ObjectLiteral>): Promise<void> {
    const fields = snapshot(event.metadata, event.entity, 'to');
    return this.save(event.manager, event.metadata, event.entity, 'insert', fields);
  }

  afterUpdate(event: UpdateEvent<ObjectLiteral>): Promise<void> {
    const fields: Record<string, AuditFieldChange> = {};
    for (const column of event.updatedColumns) {
      fields[column.propertyName] = {
        from: event.databaseEntity ? column.getEntityValue(event.databaseEntity) : null,
        to: event.entity ? column.getEntityValue(event.entity) : null,
      };
    }
    return this.save(event.manager, event.metadata, event.databaseEntity ?? event.entity, 'update', fields);
  }

  afterRemove(event: RemoveEvent<ObjectLiteral>): Promise<void> {
    const row = event.databaseEntity ?? event.entity;
    return this.save(event.manager, event.metadata, row, 'delete', snapshot(event.metadata, row, 'from'));
  }

  private async save(
    manager: EntityManager,
    metadata: EntityMetadata,
    row: ObjectLiteral | undefined,
    operation: AuditChangeOperation,
    fields: Record<string, AuditFieldChange>,
  ): Promise<void> {
    if (metadata.target === AuditLogEntity) return;
    const entity = metadata.name;
    const id = row?.['id'] === undefined || row['id'] === null ? null : String(row['id']);
    const repository = manager.getRepository(AuditLogEntity);
    await repository.save(
      repository.create({
        id: randomUUID(),
        occurredAt: new Date(),
        action: `${entity.charAt(0).toLowerCase()}${entity.slice(1)}.${VERBS[operation]}`,
        outcome: 'success',
        kind: 'change',
        actorType: 'system',
        source: 'system',
        targetType: entity,
        targetId: id,
        changes: [{ entity, id, operation, fields }],
      }),
    );
  }
}

function snapshot(metadata: EntityMetadata, row: ObjectLiteral | undefined, side: 'from' | 'to'): Record<string, AuditFieldChange> {
  const fields: Record<string, AuditFieldChange> = {};
  if (row) for (const column of metadata.columns) fields[column.propertyName] = { [side]: column.getEntityValue(row) };
  return fields;
}
