import { BadRequestException, Controller, Get, Query, UseGuards } from '@nestjs/common';
import { AuditService, InvalidAuditQueryError, type AuditPage } from 'nestjs-system-audit';
import { AdminGuard } from '../auth/admin.guard.js';
import { toAuditQuery } from './audit-query.js';

/**
 * Search the audit trail, newest first, one page at a time (follow `nextCursor`).
 * Admins only. (The same trail as pages for a browser: the viewer at `/audit`.)
 *
 * @example GET /api/audit?targetType=order&targetId=1
 * @example GET /api/audit?actorId=bob&from=2026-01-01&limit=20
 */
@Controller('api/audit')
@UseGuards(AdminGuard)
export class AuditTrailController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  async find(@Query() query: Record<string, string | string[] | undefined>): Promise<AuditPage> {
    try {
      return await this.audit.find(toAuditQuery(query));
    } catch (error) {
      if (error instanceof InvalidAuditQueryError) throw new BadRequestException(error.message);
      throw error;
    }
  }
}
