import { z } from "zod";
import { baseConfigSchema, int, millis } from "../../shared/src/runtime/config.ts";

export const coreConfigSchema = baseConfigSchema.extend({
  /** redis://[user:password@]host:port[/db] of the stock's Redis. */
  REDIS_URL: z.url(),
  /** Most items one Reserve call may carry; larger batches are refused with INVALID_ARGUMENT. */
  MAX_BATCH: int(1, 10_000, 256),
  /** How long a local sold-out flag lives without a restock message; 0 turns the flags off. */
  SOLD_OUT_CACHE_MS: millis(1000),
  /** A Redis command (or a Reserve pipeline) not answered within this fails the call with UNAVAILABLE. */
  REDIS_COMMAND_TIMEOUT_MS: millis(2000, 50),
});

export type CoreConfig = z.infer<typeof coreConfigSchema>;
