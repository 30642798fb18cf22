// A child app process for the time zone scenario: `TZ=… node --import
// ./bench/support/register.mjs test/e2e/contract-tz-child.ts`, given the database in
// CTR_DB (JSON of { kind, options }). Prints "READY <url> <offset>" once it listens.
import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { Audited } from '../../lib/index.js';
import type { TestDatabase } from '../support/test-database.js';
import { CtrItem, startContractApp } from './contract-app.js';

@Controller('ctr-tz')
class TimeZoneController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('ctr.tz.written')
  async write(@Body() body: { name: string }): Promise<{ id: number }> {
    const item = await this.dataSource.getRepository(CtrItem).save({ name: body.name });
    return { id: item.id };
  }
}

const given = JSON.parse(process.env['CTR_DB']!) as Pick<TestDatabase, 'kind' | 'options'>;
const app = await startContractApp({ db: { ...given, drop: async () => undefined }, controllers: [TimeZoneController] });
process.stdout.write(`READY ${app.url} ${new Date().getTimezoneOffset()}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
setTimeout(() => process.exit(3), 120_000).unref();
