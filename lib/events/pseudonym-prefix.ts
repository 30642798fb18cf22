/** What a stored pseudonymous actor id starts with: `hmac:` + base64url(HMAC-SHA-256). */
export const PSEUDONYM_PREFIX = 'hmac:';
