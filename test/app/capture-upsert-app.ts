import { Controller, Param, Post } from '@nestjs/common';
import { Audited } from '../../lib/index.js';

/** What `POST /capture-cases/:name` runs, by name. */
export const captureScenarios = new Map<string, () => Promise<unknown>>();

@Controller('capture-cases')
export class CaptureCasesController {
  @Post(':name')
  @Audited('capture.run')
  async run(@Param('name') name: string): Promise<{ ok: true }> {
    await captureScenarios.get(name)!();
    return { ok: true };
  }
}
