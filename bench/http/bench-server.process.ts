// Child-process entry of startServerProcess(): boots the app, reports its URL, answers
// memory/CPU requests, takes CPU profiles on request (`profile-start`, then
// `profile-stop` with the file to write) and closes on request (or when the parent goes
// away).
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { sampleProcess, startInProcessServer } from './bench-server.js';
import type { BenchAppConfig } from './bench-app.module.js';

const send = (message: unknown): void => void process.send!(message);

try {
  const server = await startInProcessServer(JSON.parse(process.argv[2]!) as BenchAppConfig);
  const close = async (): Promise<void> => {
    await server.close();
    process.exit(0);
  };
  let profiler: Session | undefined;
  // BENCH_PROFILE_KIND=heap: V8's allocation sampler (every 32 KB allocated on average)
  // instead of the CPU profiler, written as a .heapprofile.
  const heap = process.env['BENCH_PROFILE_KIND'] === 'heap';
  const startProfile = async (): Promise<void> => {
    profiler = new Session();
    profiler.connect();
    if (heap) {
      await profiler.post('HeapProfiler.enable');
      await profiler.post('HeapProfiler.startSampling', { samplingInterval: 32_768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    } else {
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 1000 });
      await profiler.post('Profiler.start');
    }
    send({ type: 'profiling' });
  };
  const stopProfile = async (file: string): Promise<void> => {
    const { profile } = heap ? await profiler!.post('HeapProfiler.stopSampling') : await profiler!.post('Profiler.stop');
    profiler!.disconnect();
    writeFileSync(file, JSON.stringify(profile));
    send({ type: 'profiled' });
  };
  process.on('message', (message: { type: string; gc?: boolean; file?: string }) => {
    if (message.type === 'sample') send({ type: 'sample', sample: sampleProcess(message.gc) });
    if (message.type === 'profile-start') void startProfile();
    if (message.type === 'profile-stop') void stopProfile(message.file!);
    if (message.type === 'close') void close();
  });
  process.on('disconnect', () => void close());
  send({ type: 'ready', url: server.url });
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
}
