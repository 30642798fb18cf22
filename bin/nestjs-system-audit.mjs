#!/usr/bin/env node
// `npx nestjs-system-audit <command>`: see docs/cli.md.
import { main } from '../dist/esm/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
