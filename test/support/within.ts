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
