/** The value below which `p` percent of `sorted` (ascending) lie, nearest-rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** `a / b`, or NaN when `b` is not a positive number. */
export const ratio = (a: number, b: number): number => (b > 0 && Number.isFinite(b) ? a / b : Number.NaN);

/** A target check for the report: `met` / `MISSED`. */
export const verdict = (met: boolean): string => (met ? 'met' : 'MISSED');

export const int = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a');
export const fixed = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
export const times = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a');
export const signedMs = (value: number): string => (Number.isFinite(value) ? `${value >= 0 ? '+' : ''}${value.toFixed(2)} ms` : 'n/a');
export const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
export const signedMib = (bytes: number): string => `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;

/** A fixed-width text table: the first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>, indent = '  '): string[] {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    indent + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** Runs `task(0 … total-1)` with at most `inFlight` calls pending at a time; rejects on the first failure. */
export async function runConcurrently(total: number, inFlight: number, task: (index: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const index = next++;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, worker));
}

/** The process's memory while something runs: RSS after a full GC before it, then RSS and heap peaks, in MB. */
export interface MemoryPeaks {
  rssBeforeMb: number;
  rssPeakMb: number;
  heapPeakMb: number;
}

/**
 * Starts sampling the process's RSS and heap every 50 ms (after a full GC when `--expose-gc`
 * is on); `stop()` ends it and returns the peaks.
 */
export function sampleMemory(): { stop(): MemoryPeaks } {
  const mb = (bytes: number): number => bytes / 1024 / 1024;
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  let heapPeak = process.memoryUsage().heapUsed;
  const sampler = setInterval(() => {
    const usage = process.memoryUsage();
    rssPeak = Math.max(rssPeak, usage.rss);
    heapPeak = Math.max(heapPeak, usage.heapUsed);
  }, 50);
  return {
    stop: () => {
      clearInterval(sampler);
      return { rssBeforeMb: mb(rssBefore), rssPeakMb: mb(rssPeak), heapPeakMb: mb(heapPeak) };
    },
  };
}
