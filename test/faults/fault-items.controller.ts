import { Body, Controller, Headers, NotFoundException, Param, ParseIntPipe, Patch, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import { Audited, type AuditedCallContext } from '../../lib/index.js';
import { FaultItem } from './fault-item.entity.js';

/** `POST /items`: a new item and, with `touch`, one more revision of that other item. */
export interface CreateItemBody {
  label: string;
  value?: number;
  touch?: number;
}

/** `PATCH /items/:id` and `POST /items/:id/touch`. */
export interface UpdateItemBody {
  value?: number;
}

/** `POST /items/hostile`: every string may hold NUL bytes, lone surrogates or a megabyte. */
export interface HostileItemBody {
  reason: string;
  targetId: string;
  note: string;
  payload: string;
}

const hostileBody = (call: AuditedCallContext): Partial<HostileItemBody> =>
  ((call.request as { body?: Partial<HostileItemBody> } | undefined)?.body ?? {});

/**
 * The fault app's API. Every handler commits before it returns; every update takes the
 * row's lock first, so that `revision` counts committed updates exactly.
 */
@Controller('items')
export class FaultItemsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** One insert, plus one update of another row when `touch` names one (two changes, one claim). */
  @Post()
  @Audited('item.created', { target: ({ result }) => result as FaultItem | undefined })
  async create(@Body() body: CreateItemBody, @Headers('x-request-id') requestId?: string): Promise<FaultItem> {
    const item = (manager: EntityManager) =>
      manager.save(manager.create(FaultItem, { label: String(body.label), value: Number(body.value ?? 0), requestId: requestId ?? null }));
    if (body.touch === undefined) return item(this.dataSource.manager);
    return this.dataSource.transaction(async (manager) => {
      const created = await item(manager);
      await this.bump(manager, Number(body.touch), Number(body.value ?? 0));
      return created;
    });
  }

  @Patch(':id')
  @Audited('item.updated', { target: ({ params }) => ({ type: 'fault-item', id: params['id']! }) })
  update(@Param('id', ParseIntPipe) id: number, @Body() body: UpdateItemBody): Promise<FaultItem> {
    return this.dataSource.transaction((manager) => this.bump(manager, id, Number(body.value ?? 0)));
  }

  /** Not `@Audited`: its change is recorded by the fallback (`kind: 'change'`). */
  @Post(':id/touch')
  touch(@Param('id', ParseIntPipe) id: number, @Body() body: UpdateItemBody): Promise<FaultItem> {
    return this.dataSource.transaction((manager) => this.bump(manager, id, Number(body.value ?? 0)));
  }

  @Post('hostile')
  @Audited('item.hostile', {
    reason: (call) => hostileBody(call).reason,
    target: (call) => ({ type: 'fault-item', id: String(hostileBody(call).targetId) }),
  })
  async hostile(@Body() body: HostileItemBody, @Headers('x-request-id') requestId?: string): Promise<{ id: number }> {
    const item = await this.dataSource.manager.save(
      this.dataSource.manager.create(FaultItem, {
        label: 'hostile',
        requestId: requestId ?? null,
        note: body.note,
        payload: { text: body.payload },
      }),
    );
    return { id: item.id };
  }

  /** The next revision of item `id`, under its row lock. */
  private async bump(manager: EntityManager, id: number, value: number): Promise<FaultItem> {
    const item = await manager.findOne(FaultItem, { where: { id }, lock: { mode: 'pessimistic_write' } });
    if (!item) throw new NotFoundException(`Item ${id} not found`);
    item.revision += 1;
    item.value = value;
    return manager.save(item);
  }
}
