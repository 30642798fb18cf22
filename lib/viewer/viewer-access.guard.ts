import { Inject, Injectable, Optional, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import type { Observable } from 'rxjs';
import { AuditEventReader } from '../read/audit-event-reader.js';
import { AUDIT_VIEWER_GUARD, AUDIT_VIEWER_PAGE } from './audit-viewer.module-definition.js';
import { rememberView, viewedContext, type ViewerPage } from './viewed-context.js';
import { VIEWER_SECURITY_HEADERS, type ViewerRequest } from './viewer-request.js';

/**
 * Guards every page of the viewer: sets the security headers first (so that a refusal
 * carries them too) and notes what the view is of (for its `audit.viewed` event, refused
 * or not), then asks the guard the application gave. Only the stylesheet, which holds no
 * trail data, is served without asking it.
 */
@Injectable()
export class ViewerAccessGuard implements CanActivate {
  constructor(
    @Inject(AUDIT_VIEWER_GUARD) private readonly guard: CanActivate,
    private readonly adapterHost: HttpAdapterHost,
    private readonly reflector: Reflector,
    // Optional only so that an app without AuditModule hears so from the viewer's options
    // provider, not as a DI error of this guard: the viewer does not start without it.
    @Optional() private readonly reader: AuditEventReader,
  ) {}

  canActivate(context: ExecutionContext): boolean | Promise<boolean> | Observable<boolean> {
    if (context.getType() !== 'http') return false;
    const http = context.switchToHttp();
    const response: unknown = http.getResponse();
    const adapter = this.adapterHost.httpAdapter;
    for (const [name, value] of VIEWER_SECURITY_HEADERS) adapter.setHeader(response, name, value);
    const page = this.reflector.get<ViewerPage | undefined>(AUDIT_VIEWER_PAGE, context.getHandler());
    if (page === 'asset') return true;
    if (page) {
      const request = http.getRequest<ViewerRequest & object>();
      rememberView(request, viewedContext(page, request, (id, type) => this.reader.storedActorId(id, type)));
    }
    return this.guard.canActivate(context);
  }
}
