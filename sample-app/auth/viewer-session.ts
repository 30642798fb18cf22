/**
 * How a browser signs in to the audit viewer (it cannot send an `Authorization` header):
 * open `/audit?token=alice-token` once; the viewer's guard answers with an HttpOnly,
 * SameSite=Strict cookie scoped to `/audit`, which the browser then sends with every page.
 * Both ways are accepted for GET requests under `/audit` only, never for a write.
 */
export const VIEWER_PATH = '/audit';
export const VIEWER_COOKIE = 'audit_token';

/** What the guards read of an Express request. */
export interface SessionRequest {
  method?: string;
  path?: string;
  headers: Record<string, string | string[] | undefined>;
  query?: Record<string, unknown>;
}

/** The token of a viewer request: the `?token=` parameter, else the cookie; `undefined` elsewhere. */
export function viewerToken(request: SessionRequest): { token: string; from: 'query' | 'cookie' } | undefined {
  if (request.method !== 'GET' && request.method !== 'HEAD') return undefined;
  const path = request.path ?? '';
  if (path !== VIEWER_PATH && !path.startsWith(`${VIEWER_PATH}/`)) return undefined;
  const query = request.query?.['token'];
  if (typeof query === 'string' && query !== '') return { token: query, from: 'query' };
  const cookies = typeof request.headers['cookie'] === 'string' ? request.headers['cookie'] : '';
  for (const pair of cookies.split(';')) {
    const [name, ...value] = pair.trim().split('=');
    if (name === VIEWER_COOKIE && value.length) {
      try {
        return { token: decodeURIComponent(value.join('=')), from: 'cookie' };
      } catch {
        return undefined; // not percent-encoding: no token (401), not a crash
      }
    }
  }
  return undefined;
}

/** The `Set-Cookie` value that keeps a viewer token for the viewer's pages only. */
export function viewerCookie(token: string): string {
  return `${VIEWER_COOKIE}=${encodeURIComponent(token)}; Path=${VIEWER_PATH}; HttpOnly; SameSite=Strict; Max-Age=28800`;
}
