/** The little the viewer reads of an Express or Fastify request. */
export interface ViewerRequest {
  originalUrl?: string;
  url?: string;
  query?: unknown;
  params?: Record<string, string>;
}

/** The security headers of every viewer response: no script at all, nothing framed, nothing cached. */
export const VIEWER_SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  [
    'Content-Security-Policy',
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  ],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
  ['Cache-Control', 'no-store'],
  ['X-Frame-Options', 'DENY'],
];

/**
 * Where the viewer is mounted as the browser reached it (global prefix included): the
 * request's path less the page's own part. Only the path: a request target in absolute
 * form (`GET http://host/audit`, as sent to a proxy) names a host, and leading slashes
 * repeated (`//host/audit`) would too in a link.
 */
export function viewerBase(request: ViewerRequest): string {
  const url = request.originalUrl ?? request.url ?? '/';
  const path = url.replace(/^[a-z][a-z\d+.-]*:\/\/[^/?#]*/i, '').split('?')[0]!.split('#')[0]!;
  return path.replace(/^\/+/, '/').replace(/(\/(events\/[^/]*|timeline|viewer\.css))?\/*$/, '') || '';
}
