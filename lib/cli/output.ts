import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';

/** Where a command writes its data: a file (`--out`) or standard output, with backpressure. */
export interface Output {
  write(text: string): Promise<void>;
  close(): Promise<void>;
}

/** An output to `path`, or to standard output when none is given. */
export function openOutput(path: string | undefined): Output {
  const stream: Writable = path === undefined ? process.stdout : createWriteStream(path, { encoding: 'utf8' });
  let failure: Error | undefined;
  stream.on('error', (err: Error) => (failure = err));
  return {
    async write(text) {
      if (failure) throw failure;
      if (!stream.write(text)) await once(stream, 'drain');
    },
    async close() {
      if (failure) throw failure;
      if (stream === process.stdout) return;
      stream.end();
      await once(stream, 'finish');
    },
  };
}
