import { z } from "zod";
import { baseConfigSchema, flag, int } from "../../shared/src/runtime/config.ts";
import { MIN_SECRET_BYTES } from "./buy-token.ts";

/** seckill-app's settings: the base ones plus these (all from env). */
export const appConfigSchema = baseConfigSchema.extend({
  /** redis://host:port — the stock's Redis: token claims, rate limits, blacklist, restock messages. */
  REDIS_URL: z.url(),
  /** HMAC key of buy tokens, the same on every instance; at least 32 bytes (`openssl rand -base64 32`). */
  BUY_TOKEN_SECRET: z.string().refine((s) => Buffer.byteLength(s, "utf8") >= MIN_SECRET_BYTES, {
    message: `must be at least ${MIN_SECRET_BYTES} bytes (e.g. openssl rand -base64 32)`,
  }),
  /** Life of a buy token. */
  BUY_TOKEN_TTL_SECONDS: int(5, 3600, 60),
  /**
   * After expiry, a token still serves a RETRY of the request that used it
   * (same request_id) for this long, so a lost answer can be fetched again.
   */
  BUY_TOKEN_RETRY_GRACE_SECONDS: int(0, 3600, 30),
  /** Buy attempts per user per activity per window (shared by all instances, in Redis). */
  USER_RATE_LIMIT: int(1, 1_000_000, 5),
  USER_RATE_WINDOW_MS: int(100, 3_600_000, 1000),
  /** GetBuyToken calls per user per activity per window. */
  TOKEN_RATE_LIMIT: int(1, 1_000_000, 10),
  TOKEN_RATE_WINDOW_MS: int(100, 3_600_000, 10_000),
  /** Buy calls past the admission gate at once (Redis + core work); GetBuyToken has its own gate of the same size. */
  MAX_INFLIGHT: int(1, 1_000_000, 512),
  /** Calls that may wait for a slot beyond MAX_INFLIGHT; more are shed at once. */
  ADMISSION_QUEUE: int(0, 1_000_000, 512),
  /** Longest wait for a slot before a call is shed. */
  ADMISSION_WAIT_MS: int(0, 10_000, 50),
  /** Suggested wait (retry_after_ms) for a shed Buy; the answer adds up to 100 % jitter. */
  OVERLOAD_RETRY_AFTER_MS: int(1, 60_000, 200),
  /** Life of a local sold-out flag without a restock message; 0 turns the flags off. */
  SOLD_OUT_TTL_MS: int(0, 600_000, 1000),
  /** Reserve micro-batching towards core: most items per RPC, longest wait for company. */
  RESERVE_MAX_BATCH: int(1, 10_000, 256),
  RESERVE_MAX_DELAY_MS: int(0, 100, 1),
  /**
   * Coalesce the commands of one event-loop tick into one write (ioredis auto-pipelining).
   * Off like everywhere else: with 64 concurrent Buys it measured no clear difference here.
   */
  REDIS_AUTO_PIPELINING: flag(),
  /** A Redis command not answered within this fails the call with UNAVAILABLE. */
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000, 1000),
  /** Start-up waits this long for the first read of the activities from etcd, then fails. */
  CATALOG_START_TIMEOUT_MS: int(100, 600_000, 15_000),
});

export type AppConfig = z.infer<typeof appConfigSchema>;
