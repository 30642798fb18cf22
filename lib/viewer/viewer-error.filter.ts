import { Catch, Inject, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import { AUDIT_VIEWER_RESOLVED_OPTIONS } from './audit-viewer.module-definition.js';
import type { ResolvedViewerOptions } from './viewer-options.js';
import { errorPage } from './viewer-pages.js';
import { viewerBase, type ViewerRequest } from './viewer-request.js';

/** An event id that names no stored event. Internal: answered as a 404 page. */
export class UnknownAuditEventError extends Error {
  constructor(id: string) {
    super(`No audit event has the id ${JSON.stringify(id)}`);
    this.name = 'UnknownAuditEventError';
  }
}

/**
 * Answers the viewer's own refusals as pages: a query it cannot use (a bad date, a bad
 * cursor) with 400 and the reason, an unknown event with 404. Anything else (a guard's
 * exception, a database error) goes to the application's exception handling.
 */
@Catch(InvalidAuditQueryError, UnknownAuditEventError)
export class ViewerErrorFilter implements ExceptionFilter {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    @Inject(AUDIT_VIEWER_RESOLVED_OPTIONS) private readonly options: ResolvedViewerOptions,
  ) {}

  catch(error: InvalidAuditQueryError | UnknownAuditEventError, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<ViewerRequest>();
    const response: unknown = http.getResponse();
    const status = error instanceof UnknownAuditEventError ? 404 : 400;
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Content-Type', 'text/html; charset=utf-8');
    adapter.reply(response, errorPage({ base: viewerBase(request), title: this.options.title }, status, error.message), status);
  }
}
