import { Controller, Param, ParseIntPipe, Patch, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/** Handlers that commit their changes, then never finish: as a process that dies there would leave them. */
@Controller('stalled')
@UseGuards(TokenGuard)
export class StalledController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Patch('orders/:id')
  @Audited('order.repriced')
  async reprice(@Param('id', ParseIntPipe) id: number): Promise<never> {
    await this.dataSource.getRepository(Order).update(id, { total: 99 });
    await this.dataSource.transaction((manager) => manager.save(Order, { status: 'spawned', total: 1 }));
    return new Promise<never>(() => undefined);
  }

  @Patch('untracked/:id')
  async untracked(@Param('id', ParseIntPipe) id: number): Promise<never> {
    await this.dataSource.getRepository(Order).update(id, { note: 'stalled' });
    return new Promise<never>(() => undefined);
  }
}
