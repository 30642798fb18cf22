// The command line (`npx nestjs-system-audit`) checks a log from outside the application:
// it must not load NestJS, which would double its start-up time (every run of `verify`,
// `prove` or `export` would pay for it).
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Every package a module loads when it is evaluated, with the chain of source files that leads to it. */
function packagesLoadedBy(entry: string): Map<string, string[]> {
  const parent = new Map<string, string | null>();
  const packages = new Map<string, string[]>();
  const chain = (file: string): string[] => {
    const files: string[] = [];
    for (let at: string | null | undefined = file; at; at = parent.get(at)) files.push(relative(ROOT, at));
    return files;
  };
  const visit = (file: string, from: string | null): void => {
    if (parent.has(file)) return;
    parent.set(file, from);
    const source = readFileSync(file, 'utf8');
    // `import type …` and `export type …` are erased; every other import is evaluated
    // (with verbatimModuleSyntax, even one that names only types inline).
    for (const [, specifier] of source.matchAll(/^\s*(?:import|export)(?!\s+type\b)[^'";]*?from\s*'([^']+)'/gm)) {
      if (specifier!.startsWith('.')) visit(resolve(dirname(file), specifier!.replace(/\.js$/, '.ts')), file);
      else if (!specifier!.startsWith('node:') && !packages.has(specifier!)) packages.set(specifier!, chain(file));
    }
  };
  visit(resolve(ROOT, entry), null);
  return packages;
}

describe('the command line', () => {
  it('loads no NestJS package', () => {
    const loaded = packagesLoadedBy('lib/cli/main.ts');
    const nest = [...loaded].filter(([name]) => name.startsWith('@nestjs/')).map(([name, files]) => `${name} <- ${files.join(' <- ')}`);
    expect(nest).toEqual([]);
    // The scan does follow the command line's imports: it reaches TypeORM and the canonical JSON package.
    expect([...loaded.keys()]).toEqual(expect.arrayContaining(['typeorm', 'canonicalize']));
  });
});
