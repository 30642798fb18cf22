import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { Audited } from '../../lib/index.js';

/** A decorated handler that runs the statements it is given as they are, one by one. */
@Controller('raw')
export class RawSqlController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('orders.maintained')
  async run(@Body() body: { statements: string[] }): Promise<{ ok: true }> {
    for (const statement of body.statements) await this.dataSource.query(statement);
    return { ok: true };
  }
}
