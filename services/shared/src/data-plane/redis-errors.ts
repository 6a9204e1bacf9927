/**
 * Redis failures as callers see them: which errors are transient (Redis
 * unreachable, restarting, failing over: retrying may succeed), and the one
 * mapping of a Redis error to a gRPC status, used by every service that
 * answers RPCs from Redis state (seckill-core's stock, seckill-app's limits).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ReplyError } from "ioredis";
import type { Logger } from "../runtime/log.ts";

/** Errors that say Redis is unreachable, restarting or failing over: the call may be retried. */
export function isTransientRedisError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (!(err instanceof ReplyError)) return true; // connection closed, timeout, max retries, ...
  return /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|NOREPLICAS)\b/.test(err.message);
}

export interface RedisErrorOptions {
  /** What the store is, for messages: "stock store", "sale state". */
  store: string;
  log: Logger;
  /** At most one "unavailable" warning per this many ms (default 1000); the rest are counted. */
  warnEveryMs?: number;
  now?: () => number;
}

/** Maps a failure of one Redis operation (`op` names it in the logs) to the status to answer. */
export type RedisErrorMapper = (err: unknown, op: string) => ConnectError;

/**
 * The mapping: a ConnectError passes unchanged; a transient error becomes
 * UNAVAILABLE (the caller retries, with the same request id) with the Redis
 * message, logged as a warning at most once per `warnEveryMs` during an outage
 * (with the count of failures since the last warning); anything else (a script
 * error, a bug) becomes INTERNAL, logged as an error with the Redis message,
 * which the answer does not repeat.
 */
export function redisErrorMapper(opts: RedisErrorOptions): RedisErrorMapper {
  const every = opts.warnEveryMs ?? 1000;
  const now = opts.now ?? Date.now;
  let lastWarnMs = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return (err, op) => {
    if (err instanceof ConnectError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (isTransientRedisError(err)) {
      const t = now();
      if (t - lastWarnMs >= every) {
        opts.log.warn(
          { store: opts.store, op, err: message, alsoFailedSinceLastWarning: suppressed },
          "redis unavailable",
        );
        lastWarnMs = t;
        suppressed = 0;
      } else suppressed++;
      return new ConnectError(`${opts.store} unavailable: ${message}`, Code.Unavailable);
    }
    opts.log.error({ store: opts.store, op, err: message }, "redis script failed");
    return new ConnectError(`${opts.store} failed`, Code.Internal);
  };
}

/** Runs one Redis operation; its failure is thrown as `map` says. */
export async function withRedisErrors<T>(
  map: RedisErrorMapper,
  op: string,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw map(err, op);
  }
}
