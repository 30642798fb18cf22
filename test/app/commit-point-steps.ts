import { Body, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, QueryRunner } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/** What a run of steps did: the id of each order saved (by note), and the statements that failed (with their error). */
export interface StepsResult {
  ids: Record<string, number>;
  failed: string[];
}

/**
 * Runs steps on one query runner of a data source, as an app that ends its transactions
 * by hand would: `start`, `commit`, `rollback` (TypeORM's transaction methods; `try-commit`
 * and `try-rollback` with their failure noted), `save:<note>` (an order), `sql:<statement>`,
 * `try:<statement>` (its failure noted, the run goes on), and `log:<note>` (a manual event
 * `order.reviewed` whose target is the order saved as `<note>`, given the runner's manager).
 * A step that fails otherwise rolls back what TypeORM still counts open and fails the run.
 */
export async function runSteps(dataSource: DataSource, audit: AuditService, steps: string[]): Promise<StepsResult> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  const result: StepsResult = { ids: {}, failed: [] };
  const attempt = async (step: string, work: () => Promise<unknown>): Promise<void> => {
    try {
      await work();
    } catch (error) {
      result.failed.push(`${step}: ${(error as Error).message}`);
    }
  };
  try {
    for (const step of steps) await runStep(runner, audit, step, result, attempt);
    return result;
  } catch (error) {
    if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
    throw error;
  } finally {
    await runner.release();
  }
}

async function runStep(
  runner: QueryRunner,
  audit: AuditService,
  step: string,
  result: StepsResult,
  attempt: (step: string, work: () => Promise<unknown>) => Promise<void>,
): Promise<void> {
  const [kind, ...rest] = step.split(':');
  const argument = rest.join(':');
  switch (kind) {
    case 'start':
      return runner.startTransaction();
    case 'commit':
      return runner.commitTransaction();
    case 'rollback':
      return runner.rollbackTransaction();
    case 'try-commit':
      return attempt(step, () => runner.commitTransaction());
    case 'try-rollback':
      return attempt(step, () => runner.rollbackTransaction());
    case 'save': {
      const order = await runner.manager.save(Order, runner.manager.create(Order, { status: 'step', note: argument }));
      result.ids[argument] = order.id;
      return;
    }
    case 'sql':
      await runner.query(argument);
      return;
    case 'try':
      return attempt(step, () => runner.query(argument));
    case 'log': {
      const id = result.ids[argument];
      await audit.log({ action: 'order.reviewed', target: { type: 'Order', id: String(id) }, reason: argument }, { manager: runner.manager });
      return;
    }
    default:
      throw new Error(`unknown step ${step}`);
  }
}

/** Runs steps on the default data source outside any unit of work (called by a test directly). */
@Injectable()
export class CommitPointSteps {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  run(steps: string[]): Promise<StepsResult> {
    return runSteps(this.dataSource, this.audit, steps);
  }
}

/** Runs steps on the default data source in a request's unit of work, as `orders.stepped`. */
@Controller('commit-point-steps')
@UseGuards(TokenGuard)
export class CommitPointStepsController {
  constructor(private readonly steps: CommitPointSteps) {}

  @Post()
  @Audited('orders.stepped')
  run(@Body() body: { steps: string[] }): Promise<StepsResult> {
    return this.steps.run(body.steps);
  }
}
