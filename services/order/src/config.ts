import { z } from "zod";
import { baseConfigSchema } from "../../shared/src/runtime/config.ts";

const millis = z.coerce.number().int().min(1);

/** The order service's settings: the base ones plus its stores, consumer and sweepers. */
export const orderConfigSchema = baseConfigSchema.extend({
  REDIS_URL: z.string().min(1).default("redis://127.0.0.1:6379"),
  MYSQL_URI: z.string().min(1).default("mysql://root@127.0.0.1:3306/seckill"),
  /** mysql2 pool size: consumer batches, state changes and queries share it. */
  MYSQL_POOL_SIZE: z.coerce.number().int().min(2).max(256).default(16),
  /** Stream entries read (and inserted in one transaction) at most per batch. */
  CONSUMER_BATCH: z.coerce.number().int().min(1).max(5000).default(500),
  /** Batches of one activity inserted concurrently (reads run ahead of commits). */
  CONSUMER_INFLIGHT: z.coerce.number().int().min(1).max(16).default(2),
  /** How long one blocking XREADGROUP waits for new entries; bounds how fast the consumer stops. */
  CONSUMER_BLOCK_MS: millis.default(1000),
  /** Entries pending this long in another consumer are taken over with XAUTOCLAIM. */
  CLAIM_IDLE_MS: millis.default(30_000),
  /** How often each activity's stream is checked for entries to take over. */
  CLAIM_INTERVAL_MS: millis.default(5000),
  /** How often the stream gauges (pending, lag, length) are refreshed. */
  STREAM_STATS_INTERVAL_MS: millis.default(5000),
  /** How often the payment-deadline sweeper runs. */
  SWEEP_INTERVAL_MS: millis.default(500),
  /** Orders cancelled per sweeper transaction. */
  SWEEP_BATCH: z.coerce.number().int().min(1).max(1000).default(100),
  /** How often orders whose stock was not settled with core are retried. */
  SETTLE_INTERVAL_MS: millis.default(2000),
  /** A state change this old with stock_settled = 0 is retried (the winner settles it first). */
  SETTLE_GRACE_MS: z.coerce.number().int().min(0).default(5000),
  /** WatchOrder re-reads the order this often, in case a pub/sub message was missed. */
  WATCH_POLL_MS: millis.default(2000),
});

export type OrderConfig = z.infer<typeof orderConfigSchema>;
