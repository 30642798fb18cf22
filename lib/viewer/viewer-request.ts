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
 * request's path less the page's own part.
 */
export function viewerBase(request: ViewerRequest): string {
  const url = request.originalUrl ?? request.url ?? '/';
  const path = url.split('?')[0]!.split('#')[0]!;
  return path.replace(/(\/(events\/[^/]*|timeline|viewer\.css))?\/*$/, '') || '';
}
