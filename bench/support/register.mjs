// `node --import ./bench/support/register.mjs bench/run.ts`: see swc-loader.mjs.
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./swc-loader.mjs', import.meta.url);
