/**
 * seckill-app's sold-out flags are the shared ones (shared/src/sale/sold-out.ts),
 * counted in this service's metrics: while a flag is up, Buy answers SOLD_OUT
 * without calling core.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../../shared/src/runtime/log.ts";
import {
  SoldOutFlags as Flags,
  listenForRestock as listen,
} from "../../shared/src/sale/sold-out.ts";
import { restockMessages, soldOutFlagChanges } from "./metrics.ts";

export class SoldOutFlags extends Flags {
  constructor(ttlMs: number, now: () => number = Date.now) {
    super(ttlMs, now, (change) => soldOutFlagChanges.inc({ change }));
  }
}

export function listenForRestock(subscriber: Redis, flags: SoldOutFlags, log: Logger) {
  return listen(subscriber, flags, log, () => restockMessages.inc());
}
