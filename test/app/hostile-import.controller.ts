import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';
import { ImportLine } from './import-line.entity.js';

/** An import large enough to pass the unit's in-memory bound, signed off with a manual event. */
@Controller('hostile/import')
export class HostileImportController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  @Post()
  @Audited('lines.imported', { target: ({ args }) => ({ type: 'import', id: (args[0] as { batch: string }).batch }) })
  async import(@Body() body: { batch: string; count: number }): Promise<{ batch: string }> {
    await this.dataSource.transaction(async (manager) => {
      for (let i = 0; i < body.count; i++) await manager.insert(ImportLine, { batch: body.batch, sku: `sku-${i}` });
    });
    await this.audit.log({ action: 'import.approved', reason: `batch ${body.batch} signed off`, context: { approver: 'alice' } });
    return { batch: body.batch };
  }
}
