import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { Audited } from '../../lib/index.js';

/** Decorated handlers that run the statements they are given as they are, one by one. */
@Controller('raw')
export class RawSqlController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('orders.maintained')
  async run(@Body() body: { statements: string[] }): Promise<{ ok: true }> {
    for (const statement of body.statements) await this.dataSource.query(statement);
    return { ok: true };
  }

  /** The same, in one transaction (committed as soon as the last statement has returned). */
  @Post('transaction')
  @Audited('orders.maintained')
  async runInTransaction(@Body() body: { statements: string[] }): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      for (const statement of body.statements) await manager.query(statement);
    });
    return { ok: true };
  }
}
