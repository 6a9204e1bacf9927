/** Waiting, for every service and the shared library: one sleep, one retry backoff. */

/** Sleeps for `ms`, or less if `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Exponential backoff with jitter: 100 ms, 200 ms, … up to `maxMs`. */
export function backoffMs(attempt: number, maxMs = 2000): number {
  const base = Math.min(maxMs, 100 * 2 ** Math.min(attempt, 10));
  return base / 2 + Math.random() * (base / 2);
}
