// Child-process entry of startServerProcess(): boots the app, reports its URL, answers
// memory/CPU requests and closes on request (or when the parent goes away).
import { sampleProcess, startInProcessServer } from './bench-server.js';
import type { BenchAppConfig } from './bench-app.module.js';

const send = (message: unknown): void => void process.send!(message);

try {
  const server = await startInProcessServer(JSON.parse(process.argv[2]!) as BenchAppConfig);
  const close = async (): Promise<void> => {
    await server.close();
    process.exit(0);
  };
  process.on('message', (message: { type: string; gc?: boolean }) => {
    if (message.type === 'sample') send({ type: 'sample', sample: sampleProcess(message.gc) });
    if (message.type === 'close') void close();
  });
  process.on('disconnect', () => void close());
  send({ type: 'ready', url: server.url });
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
}
