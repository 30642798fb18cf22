import type { EntityManager } from 'typeorm';
import { describe, expect, it } from 'vitest';
import {
  currentTransactionManager,
  currentUnit,
  isInsideQueryBuilder,
  runInsideWrite,
  runInTransaction,
  runInUnit,
} from '../../lib/context/async-frame.js';
import type { UnitOfWork } from '../../lib/context/unit-of-work.js';

// The frame only stores units and managers; these stand-ins are never called.
const unit = (id: string) => ({ id }) as unknown as UnitOfWork;
const manager = (name: string) => ({ name }) as unknown as EntityManager;
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('the async frame (one AsyncLocalStorage for units, transactions and query builders)', () => {
  it('carries each part across awaits, nested runs keep the outer parts, and leaving a run restores the outer frame', async () => {
    const owner = {};
    const [a, b] = [unit('a'), unit('b')];
    const m = manager('m');
    const seen: unknown[] = [];
    await runInUnit(owner, a, async () => {
      await tick();
      await runInTransaction(m, async () => {
        await tick();
        await runInsideWrite(async () => {
          await tick();
          seen.push([currentUnit(owner), currentTransactionManager(), isInsideQueryBuilder()]);
        });
        seen.push([currentUnit(owner), currentTransactionManager(), isInsideQueryBuilder()]);
        await runInUnit(owner, b, async () => {
          await tick();
          seen.push([currentUnit(owner), currentTransactionManager()]);
        });
        seen.push(currentUnit(owner));
      });
      seen.push([currentUnit(owner), currentTransactionManager()]);
    });
    seen.push([currentUnit(owner), currentTransactionManager(), isInsideQueryBuilder()]);
    expect(seen).toEqual([[a, m, true], [a, m, false], [b, m], a, [a, undefined], [undefined, undefined, false]]);
  });

  it("keeps two owners' units apart: each sees its own innermost unit, not the other's", async () => {
    const [first, second] = [{}, {}];
    const [a, b] = [unit('a'), unit('b')];
    const seen: unknown[] = [];
    await runInUnit(first, a, async () => {
      seen.push([currentUnit(first), currentUnit(second)]);
      await runInUnit(second, b, async () => {
        await tick();
        seen.push([currentUnit(first), currentUnit(second)]);
      });
    });
    expect(seen).toEqual([
      [a, undefined],
      [a, b],
    ]);
  });

  it('concurrent runs do not see each other', async () => {
    const owner = {};
    const units = Array.from({ length: 50 }, (_, i) => unit(`u${i}`));
    const seen = await Promise.all(
      units.map((u, i) =>
        runInUnit(owner, u, async () => {
          for (let k = 0; k < i % 5; k++) await tick();
          return currentUnit(owner);
        }),
      ),
    );
    expect(seen).toEqual(units);
  });

  it('the library keeps a single AsyncLocalStorage (each one in use slows every promise on Node 20)', async () => {
    const { readdir, readFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const root = join(import.meta.dirname, '../../lib');
    const files = (await readdir(root, { recursive: true })).filter((file) => file.endsWith('.ts'));
    const creating: string[] = [];
    for (const file of files) {
      const text = await readFile(join(root, file), 'utf8');
      if (/new AsyncLocalStorage\b/.test(text)) creating.push(file.split('\\').join('/'));
    }
    expect(creating).toEqual(['context/async-frame.ts']);
  });
});
