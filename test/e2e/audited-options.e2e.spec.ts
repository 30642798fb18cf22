import { Body, Controller, Param, ParseIntPipe, Patch } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { ADAPTERS } from '../app/create-test-app.js';
import { appsPerTest } from '../support/test-apps.js';

@Controller('flags')
class FlagsController {
  /** Writes nothing: the target and the reason can only come from the options. */
  @Patch('orders/:id')
  @Audited('order.flagged', {
    target: ({ args }) => ({ type: 'order', id: args[0] as number }),
    reason: ({ args }) => (args[1] as { why?: string } | undefined)?.why,
    context: ({ request, params, result }) => ({
      hasRequest: request !== undefined,
      params,
      returned: (result as { why?: string } | undefined)?.why,
    }),
  })
  flag(@Param('id', ParseIntPipe) id: number, @Body() body: { why: string }): { id: number; why: string } {
    return { id, why: body.why };
  }
}

describe.each(ADAPTERS)('@Audited options of a controller handler over %s', (adapter) => {
  const apps = appsPerTest();

  it('get the handler arguments after pipes, beside the request, route parameters and result', async () => {
    await apps.database('sqlite');
    const t = await apps.start({ adapter, controllers: [FlagsController] });
    const response = await t.request('/flags/orders/42', { method: 'PATCH', json: { why: 'fraud check' } });
    expect(response.status).toBe(200);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.targetType, row.targetId, row.reason, row.context])).toEqual([
      ['order.flagged', 'order', '42', 'fraud check', { hasRequest: true, params: { id: '42' }, returned: 'fraud check' }],
    ]);
  });

  it('get no arguments when a pipe turned the call away before the handler', async () => {
    await apps.database('sqlite');
    const t = await apps.start({ adapter, controllers: [FlagsController] });
    const response = await t.request('/flags/orders/forty-two', { method: 'PATCH', json: { why: 'fraud check' } });
    expect(response.status).toBe(400);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.outcome, row.targetId, row.reason])).toEqual([['order.flagged', 'failure', null, null]]);
  });
});
