import { appendFileSync, writeFileSync } from 'node:fs';
import base from './vitest.config.mts';
writeFileSync('/tmp/resolutions.log', '');
const spy = {
  name: 'resolution-spy',
  enforce: 'pre' as const,
  async resolveId(this: any, source: string, importer: string | undefined, options: any) {
    if (!importer || /^\.|^node:|^\0/.test(source)) return null;
    if (!/\/work\/main\/(lib|test)\//.test(importer)) return null;
    const r = await this.resolve(source, importer, { ...options, skipSelf: true });
    appendFileSync('/tmp/resolutions.log', `${importer.replace('/work/main/', '')}\t${source}\t${r?.id}\t${r?.external}\n`);
    return r;
  },
};
export default { ...base, plugins: [spy, ...(base.plugins as any[])], test: { ...base.test, include: ['test/**/*.spec.ts', 'compat/nest11/tmp-identity.spec.ts'] } };
