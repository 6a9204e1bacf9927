import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../runtime/log.ts";
import { sleep } from "../runtime/time.ts";

export type { Redis };

/**
 * An ioredis client as every service wants it: auto-pipelining off (measured
 * slower for our one-script-per-call load), commands queued while reconnecting
 * so a Redis restart is a pause rather than a failure, and reconnects logged.
 */
export function createRedis(url: string, log: Logger, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    enableAutoPipelining: false,
    maxRetriesPerRequest: 20,
    retryStrategy: (times) => Math.min(50 * times, 1000),
    lazyConnect: false,
    ...options,
  });
  let wasReady = false;
  redis.on("ready", () => {
    if (wasReady) log.info({ url: redactUrl(url) }, "redis reconnected");
    wasReady = true;
  });
  redis.on("error", (err) => log.warn({ err: err.message }, "redis connection error"));
  return redis;
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, "//[redacted]@");
}

/**
 * Waits until Redis answers PING (pods start in any order), or fails after
 * `timeoutMs` with a readable message (the process then exits 1).
 */
export async function waitForRedis(redis: Redis, url: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await redis.ping();
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`redis at ${redactUrl(url)} is unreachable: ${(err as Error).message}`);
      }
      await sleep(250);
    }
  }
}

/** QUIT, or drop the connection if Redis does not answer promptly (it may be down). */
export async function closeRedis(redis: Redis): Promise<void> {
  await Promise.race([redis.quit().catch(() => {}), sleep(1000)]);
  redis.disconnect();
}
