/**
 * What `work` gives, or `'waited'` when it has not settled within `ms` (for statements that
 * must not wait for another transaction's locks: InnoDB's lock wait lasts 50 s by default).
 */
export async function within<T>(work: Promise<T>, ms: number): Promise<T | 'waited'> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<'waited'>((resolve) => (timer = setTimeout(() => resolve('waited'), ms)));
  try {
    return await Promise.race([work, waited]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads `read` every 50 ms until `done` holds of what it gives or `ms` have passed, and
 * gives its last reading (for what the app stores in the background: the caller asserts it).
 */
export async function polled<T>(read: () => Promise<T>, done: (value: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() >= deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
