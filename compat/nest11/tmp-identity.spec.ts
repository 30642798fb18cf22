import { createRequire } from 'node:module';
import { it, expect, inject } from 'vitest';
import { AuditModule } from '../../lib/index.js';
import { databases } from '../../test/support/test-database.js';

const req = createRequire('/work/main/compat/nest11/package.json');

it('identity', async () => {
  console.log('core version', (await import('@nestjs/core/package.json')).version);
  console.log('common version', (await import('@nestjs/common/package.json')).version);
  console.log('typeorm version', (await import('typeorm/package.json' as string)).version);
  console.log('databases', databases(), inject('databases'));
  const pairs: Array<[string, string]> = [
    ['@nestjs/common', 'Module'], ['@nestjs/core', 'NestFactory'], ['@nestjs/typeorm', 'TypeOrmModule'],
    ['typeorm', 'DataSource'], ['rxjs', 'Observable'], ['@nestjs/testing', 'Test'],
    ['@nestjs/platform-express', 'ExpressAdapter'], ['@nestjs/platform-fastify', 'FastifyAdapter'], ['class-validator', 'validate'], ['pg', 'Client'],
  ];
  for (const [name, key] of pairs) {
    const esm = (await import(/* @vite-ignore */ name)) as Record<string, unknown>;
    const cjs = req(name) as Record<string, unknown>;
    const same = (esm[key] ?? (esm.default as Record<string, unknown>)?.[key]) === cjs[key];
    console.log(name, key, same);
    expect(same).toBe(true);
  }
  // lib's AuditModule extends a ConfigurableModuleClass built with the aliased @nestjs/common
  const common = req('@nestjs/common');
  const keys = Reflect.getMetadataKeys(AuditModule);
  console.log('AuditModule metadata keys', keys, typeof common.Global);
  const fromRoot = Object.keys(req.cache).filter((p) => p.startsWith('/work/main/node_modules/'));
  console.log('cjs modules loaded from repo node_modules:', fromRoot.length, fromRoot.slice(0, 5));
  console.log('cjs modules loaded from compat node_modules:', Object.keys(req.cache).filter((p) => p.startsWith('/work/main/compat/nest11/node_modules/')).length);
});
