/** A signed-in user, as the token guard puts it on `request.user`. */
export interface DemoUser {
  id: string;
  email: string;
  roles: string[];
}

/**
 * The demo's users, by bearer token. A real service would verify a JWT or a session
 * here; the audit module only needs `request.user` to be set by the time the handler
 * has run.
 */
export const DEMO_USERS: Readonly<Record<string, DemoUser>> = {
  'alice-token': { id: 'alice', email: 'alice@example.com', roles: ['admin'] },
  'bob-token': { id: 'bob', email: 'bob@example.com', roles: [] },
  'carol-token': { id: 'carol', email: 'carol@example.com', roles: [] },
};

export const isAdmin = (user: DemoUser | undefined): boolean => user?.roles.includes('admin') ?? false;
