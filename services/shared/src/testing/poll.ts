/** Waiting in tests for something that happens asynchronously (a watch, a consumer, a flag). */

export interface PollOptions {
  /** Give up after this long; default 10 s. */
  timeoutMs?: number;
  /** Pause between two checks; default 10 ms. */
  intervalMs?: number;
  /** What is awaited, for the timeout error ("the instance to appear"). */
  message?: string;
  /**
   * A check that throws counts as "not yet" (its last error goes into the
   * timeout error). By default a throwing check fails the wait at once.
   */
  retryErrors?: boolean;
}

/**
 * Calls `check` until it returns true and answers how many milliseconds that
 * took; throws once `timeoutMs` passed with the check still false.
 */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  options: PollOptions = {},
): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 10;
  const started = performance.now();
  let lastError: unknown;
  for (;;) {
    let done = false;
    try {
      done = await check();
      lastError = undefined;
    } catch (err) {
      if (!options.retryErrors) throw err;
      lastError = err;
    }
    const elapsed = performance.now() - started;
    if (done) return elapsed;
    if (elapsed > timeoutMs) {
      const what = options.message ?? "the condition";
      const last = lastError === undefined ? "" : ` (last check threw: ${String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
