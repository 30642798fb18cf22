import { Controller, Get, Header, Inject, Param, Req, SetMetadata, UseFilters, UseGuards, type Type } from '@nestjs/common';
import { Audited } from '../decorators/audited.decorator.js';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import type { AuditTarget } from '../interfaces/audit-event.interface.js';
import { AuditEventReader } from '../read/audit-event-reader.js';
import { AuditService } from '../service/audit.service.js';
import { AUDIT_VIEWER_PAGE, AUDIT_VIEWER_RESOLVED_OPTIONS } from './audit-viewer.module-definition.js';
import { recalledView } from './viewed-context.js';
import { ViewerAccessGuard } from './viewer-access.guard.js';
import { UnknownAuditEventError, ViewerErrorFilter } from './viewer-error.filter.js';
import type { ResolvedViewerOptions } from './viewer-options.js';
import { eventPage, searchPage, timelinePage, type PageFrame } from './viewer-pages.js';
import { field, readSearchForm, toAuditQuery } from './viewer-query.js';
import { viewerBase, type ViewerRequest } from './viewer-request.js';
import { VIEWER_CSS } from './viewer.css.js';

const HTML = 'text/html; charset=utf-8';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The `audit.viewed` event of a page: its context noted by the access guard. */
function viewed(page: 'search' | 'event' | 'timeline'): MethodDecorator {
  const audited = Audited('audit.viewed', { context: ({ request }) => recalledView(request, page) });
  const named = SetMetadata(AUDIT_VIEWER_PAGE, page);
  return (target, key, descriptor) => {
    named(target, key, descriptor);
    return audited(target, key, descriptor);
  };
}

/**
 * The viewer's pages. Read-only: GET routes, reads through `AuditService` (and the
 * event reader, which never writes). `AuditViewerModule.register()` mounts a subclass at
 * the configured path; each page view is recorded as `audit.viewed`.
 */
@UseGuards(ViewerAccessGuard)
@UseFilters(ViewerErrorFilter)
export class AuditViewerPages {
  constructor(
    private readonly audit: AuditService,
    private readonly reader: AuditEventReader,
    @Inject(AUDIT_VIEWER_RESOLVED_OPTIONS) private readonly options: ResolvedViewerOptions,
  ) {}

  /** The stylesheet: the only style the pages use (the CSP allows no other). */
  @Get('viewer.css')
  @Header('Content-Type', 'text/css; charset=utf-8')
  @SetMetadata(AUDIT_VIEWER_PAGE, 'asset')
  stylesheet(): string {
    return VIEWER_CSS;
  }

  /** The search form and a page of matching events, newest first. */
  @Get()
  @Header('Content-Type', HTML)
  @viewed('search')
  async search(@Req() request: ViewerRequest): Promise<string> {
    const form = readSearchForm(request.query);
    const page = await this.audit.find(toAuditQuery(form, this.options.pageSize));
    return searchPage(this.frame(request), form, page.items, page.nextCursor);
  }

  /** One event: every field, its changes as diffs, its inclusion proof. */
  @Get('events/:id')
  @Header('Content-Type', HTML)
  @viewed('event')
  async event(@Req() request: ViewerRequest, @Param('id') id: string): Promise<string> {
    if (!UUID.test(id)) throw new InvalidAuditQueryError('id', `is not an event id (a UUID): ${JSON.stringify(id)}`);
    const found = await this.reader.read(id);
    if (!found) throw new UnknownAuditEventError(id);
    return eventPage(this.frame(request), found.event, found.inclusion);
  }

  /** A target's history, oldest first, with the diffs. */
  @Get('timeline')
  @Header('Content-Type', HTML)
  @viewed('timeline')
  async timeline(@Req() request: ViewerRequest): Promise<string> {
    const query = (request.query ?? {}) as Record<string, unknown>;
    const target: AuditTarget = { type: field(query, 'type'), id: field(query, 'id') };
    if (!target.type || !target.id) throw new InvalidAuditQueryError('target', 'needs both a type and an id (e.g. ?type=order&id=42)');
    const events = await this.audit.history(target, { limit: this.options.timelineLimit });
    return timelinePage(this.frame(request), target, events, this.options.timelineLimit);
  }

  private frame(request: ViewerRequest): PageFrame {
    return { base: viewerBase(request), title: this.options.title };
  }
}

/** The pages mounted at `path`: a controller class of its own per registration. */
export function viewerController(path: string): Type<AuditViewerPages> {
  @Controller(path)
  class AuditViewerController extends AuditViewerPages {}
  return AuditViewerController;
}
