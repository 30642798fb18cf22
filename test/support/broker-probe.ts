import { connect, createServer } from 'node:net';

export const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** Whether something accepts TCP connections at host:port (within `timeoutMs`). */
export function isListening(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether the NATS server is up; with CI=true it must be, so a missing server fails the run. */
export async function natsAvailable(): Promise<boolean> {
  const { hostname, port } = new URL(NATS_URL);
  const up = await isListening(hostname, Number(port || 4222));
  if (!up && process.env['CI'] === 'true') throw new Error(`CI=true and the NATS suites are mandatory, but ${NATS_URL} is unreachable`);
  if (!up) console.warn(`!! SKIPPING NATS suites: ${NATS_URL} is unreachable (set CI=true to make them mandatory)`);
  return up;
}

/** A free TCP port on 127.0.0.1, for a server the test starts right after. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
