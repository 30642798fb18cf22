// The fault app's process: `node --import ./bench/support/register.mjs test/faults/fault-app.ts`
// with the FAULT_* environment variables of fault-app.module.ts. Prints `READY <url>` once
// it listens; SIGTERM closes it gracefully (shutdown hooks on). It exits when its parent's
// stdin pipe closes, so a runner that dies leaves no app behind.
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { FaultAppModule, faultAppConfigFromEnv } from './fault-app.module.js';

/** Request bodies carry megabyte strings in the hostile-values scenario. */
const BODY_LIMIT = '16mb';

try {
  const app = await NestFactory.create<NestExpressApplication>(FaultAppModule.forRoot(faultAppConfigFromEnv()), {
    bodyParser: false,
    logger: ['error', 'warn', 'fatal'],
  });
  app.useBodyParser('json', { limit: BODY_LIMIT });
  app.enableShutdownHooks();
  await app.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  process.stdout.write(`READY ${url}\n`);
  process.stdin.on('end', () => process.exit(1)).on('error', () => process.exit(1)).resume();
  process.stdin.unref?.();
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
}
