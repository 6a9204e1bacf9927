import { z } from "zod";
import { baseConfigSchema, int, millis } from "../../shared/src/runtime/config.ts";

/** A positive duration in milliseconds. */
const interval = (fallback: number) => millis(fallback, 1);

/** The order service's settings: the base ones plus its stores, consumer and sweepers. */
export const orderConfigSchema = baseConfigSchema.extend({
  REDIS_URL: z.string().min(1).default("redis://127.0.0.1:6379"),
  MYSQL_URI: z.string().min(1).default("mysql://root@127.0.0.1:3306/seckill"),
  /** mysql2 pool size: consumer batches, state changes and queries share it. */
  MYSQL_POOL_SIZE: int(2, 256, 16),
  /** Stream entries read (and inserted in one transaction) at most per batch. */
  CONSUMER_BATCH: int(1, 5000, 500),
  /** Batches of one activity inserted concurrently (reads run ahead of commits). */
  CONSUMER_INFLIGHT: int(1, 16, 2),
  /** How long one blocking XREADGROUP waits for new entries; bounds how fast the consumer stops. */
  CONSUMER_BLOCK_MS: interval(1000),
  /** Entries pending this long in another consumer are taken over with XAUTOCLAIM. */
  CLAIM_IDLE_MS: interval(30_000),
  /** How often each activity's stream is checked for entries to take over. */
  CLAIM_INTERVAL_MS: interval(5000),
  /** How often the stream gauges (pending, lag, length) are refreshed. */
  STREAM_STATS_INTERVAL_MS: interval(5000),
  /** How often the payment-deadline sweeper runs. */
  SWEEP_INTERVAL_MS: interval(500),
  /** Orders cancelled per sweeper transaction. */
  SWEEP_BATCH: int(1, 1000, 100),
  /** How often orders whose stock was not settled with core are retried. */
  SETTLE_INTERVAL_MS: interval(2000),
  /** A state change this old with stock_settled = 0 is retried (the winner settles it first). */
  SETTLE_GRACE_MS: millis(5000),
  /** WatchOrder re-reads the order this often, in case a pub/sub message was missed. */
  WATCH_POLL_MS: interval(2000),
});

export type OrderConfig = z.infer<typeof orderConfigSchema>;
