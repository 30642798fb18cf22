import { Controller, Post, Res } from '@nestjs/common';
import { Audited } from '../../lib/index.js';

/** Express's response or Fastify's reply: enough to answer. */
interface Answer {
  status(code: number): Answer;
  json?(body: unknown): unknown;
  send?(body: unknown): unknown;
}

/** The body the handler answers with. */
export const RECEIPT = { receipt: 'r-1', note: 'the answer the client was given' };

/**
 * An `@Res()` handler that answers, then fails in follow-up work (a notification) after
 * the answer went out: the answer stands, the handler's event records the failure.
 */
@Controller('hostile/sent-then-throw')
export class SentThenThrowController {
  @Post()
  @Audited('receipt.issued')
  async issue(@Res() response: Answer): Promise<void> {
    const answered = response.status(201);
    if (answered.json) answered.json(RECEIPT);
    else answered.send!(RECEIPT);
    await Promise.resolve();
    throw new Error('the notification after the answer failed');
  }
}
