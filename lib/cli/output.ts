import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';

/**
 * Where the command line writes: its standard output (data, results) and standard error
 * (messages; a progress line too while `stderr.isTTY`). `main()` uses the process's.
 */
export interface CliIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
}

/** The process's standard output and error. */
export const processIo = (): CliIo => ({ stdout: process.stdout, stderr: process.stderr });

/** Where a command writes its data: a file (`--out`) or standard output, with backpressure. */
export interface Output {
  write(text: string): Promise<void>;
  close(): Promise<void>;
}

/** An output to `path`, or to `stdout` when none is given. */
export function openOutput(path: string | undefined, stdout: Writable): Output {
  const stream: Writable = path === undefined ? stdout : createWriteStream(path, { encoding: 'utf8' });
  let failure: Error | undefined;
  const onError = (err: Error): void => void (failure = err);
  stream.on('error', onError);
  return {
    async write(text) {
      if (failure) throw failure;
      if (!stream.write(text)) await once(stream, 'drain');
    },
    async close() {
      if (stream === stdout) stream.off('error', onError);
      if (failure) throw failure;
      if (stream === stdout) return;
      stream.end();
      await once(stream, 'finish');
    },
  };
}
