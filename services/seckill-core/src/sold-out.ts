/**
 * Core's sold-out flags are the shared ones (shared/src/sale/sold-out.ts): once an
 * answer says an activity has no stock left, later items for it skip the
 * reservation script until a restock message or the TTL clears the flag.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { listenForRestock as listen, SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { restockMessages } from "./metrics.ts";

export { SoldOutFlags };

export function listenForRestock(subscriber: Redis, flags: SoldOutFlags, log: Logger) {
  return listen(subscriber, flags, log, () => restockMessages.inc());
}
