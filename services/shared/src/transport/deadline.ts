import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The absolute deadline (epoch ms) of the call being served. Servers set it for
 * the duration of a handler; clients shorten their own timeouts to it, so a
 * caller's deadline bounds the whole chain of hops below it.
 */
const deadlineStore = new AsyncLocalStorage<number>();

export function runWithDeadline<T>(deadline: number | undefined, fn: () => T): T {
  return deadline === undefined ? fn() : deadlineStore.run(deadline, fn);
}

/** Runs `fn` with no inherited deadline: for work shared by many callers, such as a batch. */
export function runWithoutDeadline<T>(fn: () => T): T {
  return deadlineStore.exit(fn);
}

export function currentDeadline(): number | undefined {
  return deadlineStore.getStore();
}

/** The timeout for an outgoing call: its own, cut to what remains of the inherited deadline. */
export function effectiveTimeoutMs(own: number | undefined, now = Date.now()): number | undefined {
  const deadline = currentDeadline();
  if (deadline === undefined) return own;
  const remaining = Math.max(1, deadline - now);
  return own === undefined ? remaining : Math.min(own, remaining);
}
