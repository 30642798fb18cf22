import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import type { Observable } from 'rxjs';
import { AUDIT_VIEWER_ASSET, AUDIT_VIEWER_GUARD } from './audit-viewer.module-definition.js';
import { VIEWER_SECURITY_HEADERS } from './viewer-request.js';

/**
 * Guards every page of the viewer: sets the security headers first (so that a refusal
 * carries them too), then asks the guard the application gave. Only the stylesheet, which
 * holds no trail data, is served without asking it.
 */
@Injectable()
export class ViewerAccessGuard implements CanActivate {
  constructor(
    @Inject(AUDIT_VIEWER_GUARD) private readonly guard: CanActivate,
    private readonly adapterHost: HttpAdapterHost,
    private readonly reflector: Reflector,
  ) {}

  canActivate(context: ExecutionContext): boolean | Promise<boolean> | Observable<boolean> {
    if (context.getType() !== 'http') return false;
    const response: unknown = context.switchToHttp().getResponse();
    const adapter = this.adapterHost.httpAdapter;
    for (const [name, value] of VIEWER_SECURITY_HEADERS) adapter.setHeader(response, name, value);
    if (this.reflector.get<boolean | undefined>(AUDIT_VIEWER_ASSET, context.getHandler())) return true;
    return this.guard.canActivate(context);
  }
}
