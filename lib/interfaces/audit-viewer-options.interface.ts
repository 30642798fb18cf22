import type { CanActivate, Type } from '@nestjs/common';

/**
 * Who may open the viewer: a guard class (made by Nest in the viewer's module, with its
 * dependencies injected) or a guard instance. It runs on every page of the viewer; its
 * exception (e.g. `ForbiddenException`) is the response when it turns a request away.
 */
export type AuditViewerGuard = Type<CanActivate> | CanActivate;

/** Options of `AuditViewerModule.register()`, and what the `registerAsync()` factory returns. */
export interface AuditViewerModuleOptions {
  /**
   * Who may see the trail. Required: the viewer shows who did what, and there is no safe
   * default. Start-up fails without it.
   */
  guard: AuditViewerGuard;
  /**
   * Events per page of the search results (the "Older" link pages on).
   * @default 50
   */
  pageSize?: number;
  /**
   * Events shown on a target's timeline, oldest first.
   * @default 500
   */
  timelineLimit?: number;
  /**
   * The heading and title of the pages.
   * @default 'Audit trail'
   */
  title?: string;
}

/** Given to `register()` and `registerAsync()` alike: routes exist before providers are made. */
export interface AuditViewerModuleExtras {
  /**
   * Where the pages are mounted (after any global prefix), e.g. `/audit`: the search at
   * `path`, an event at `path/events/:id`, a timeline at `path/timeline`, the stylesheet at
   * `path/viewer.css`.
   * @default '/audit'
   */
  path: string;
}
