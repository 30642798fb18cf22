// Runs the command line tool from its TypeScript source (under bench/support/register.mjs):
// node --import ./bench/support/register.mjs test/support/run-cli.mjs <command> [options]
import { main } from '../../lib/cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
