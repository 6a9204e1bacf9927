import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "./log.ts";

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
