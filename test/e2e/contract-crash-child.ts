// A child app process for the crash scenario: `node --import ./bench/support/register.mjs
// test/e2e/contract-crash-child.ts`, given the database in CTR_DB (JSON of
// { kind, options }). Prints "READY <url>" once it listens; its handlers commit a write,
// then hang until the process is killed.
import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { Audited } from '../../lib/index.js';
import type { TestDatabase } from '../support/test-database.js';
import { CtrItem, CtrLine, startContractApp, HeaderUserGuard } from './contract-app.js';

const HANG_MS = 120_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Controller('ctr-crash')
@UseGuards(HeaderUserGuard)
class CrashController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post('audited')
  @Audited('ctr.crash.audited')
  async audited(@Body() body: { name: string }): Promise<void> {
    await this.dataSource.transaction((manager) => manager.save(CtrItem, manager.create(CtrItem, { name: body.name })));
    await sleep(HANG_MS);
  }

  /** An import of `count` rows (more than a unit keeps in memory), committed, then a hang. */
  @Post('bulk')
  @Audited('ctr.crash.bulk')
  async bulk(@Body() body: { batch: string; count: number }): Promise<void> {
    await this.dataSource.transaction((manager) =>
      manager.save(
        CtrLine,
        Array.from({ length: body.count }, (_, n) => manager.create(CtrLine, { batch: body.batch, n })),
        { chunk: 500 },
      ),
    );
    await sleep(HANG_MS);
  }

  @Post('plain')
  async plain(@Body() body: { name: string }): Promise<void> {
    await this.dataSource.transaction((manager) => manager.save(CtrItem, manager.create(CtrItem, { name: body.name })));
    await sleep(HANG_MS);
  }
}

const given = JSON.parse(process.env['CTR_DB']!) as Pick<TestDatabase, 'kind' | 'options'>;
const app = await startContractApp({
  db: { ...given, drop: async () => undefined },
  controllers: [CrashController],
  providers: [HeaderUserGuard],
  audit: { recoverAfter: 1000 },
});
process.stdout.write(`READY ${app.url}\n`);
// Never outlive the test that started it.
setTimeout(() => process.exit(3), HANG_MS).unref();
