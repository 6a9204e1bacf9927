/**
 * This instance's sold-out flags: set when core answers sold_out, cleared by
 * core's restock message (`{act:<id>}:restock`, published on every Release)
 * or after a short TTL, whichever comes first. While a flag is up, Buy answers
 * SOLD_OUT without calling core.
 */
import type { Redis } from "ioredis";
import { activityOfRestockChannel, RESTOCK_PATTERN } from "../../seckill-core/src/keys.ts";
import type { Logger } from "../../shared/src/log.ts";
import { restockMessages, soldOutFlagChanges } from "./metrics.ts";

export class SoldOutFlags {
  private readonly until = new Map<string, number>();
  /** Bumped whenever a flag goes up or down, so derived views know to recompute. */
  version = 0;

  /** `ttlMs` 0 turns the flags off. */
  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(activityId: string, nowMs = this.now()): boolean {
    const until = this.until.get(activityId);
    if (until === undefined) return false;
    if (nowMs < until) return true;
    this.until.delete(activityId);
    this.version++;
    soldOutFlagChanges.inc({ change: "expired" });
    return false;
  }

  /** Raises (or extends) the flag; true when it was not up. */
  mark(activityId: string, nowMs = this.now()): boolean {
    if (this.ttlMs <= 0) return false;
    const fresh = !this.has(activityId, nowMs);
    this.until.set(activityId, nowMs + this.ttlMs);
    if (fresh) {
      this.version++;
      soldOutFlagChanges.inc({ change: "set" });
    }
    return fresh;
  }

  /** Drops the flag; true when it was up. */
  clear(activityId: string): boolean {
    if (!this.until.delete(activityId)) return false;
    this.version++;
    soldOutFlagChanges.inc({ change: "restock" });
    return true;
  }

  /** When the first flag expires by itself (epoch ms), or Infinity. */
  nextExpiry(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const until of this.until.values()) if (until < min) min = until;
    return min;
  }

  get size(): number {
    return this.until.size;
  }
}

/**
 * Clears flags on restock messages. `subscriber` is a connection in subscriber
 * mode (it may be shared with other subscriptions, e.g. the blacklist's);
 * ioredis re-subscribes after a reconnect. Resolves once subscribed.
 */
export async function listenForRestock(
  subscriber: Redis,
  flags: SoldOutFlags,
  log: Logger,
): Promise<() => Promise<void>> {
  const onMessage = (_pattern: string, channel: string) => {
    const activityId = activityOfRestockChannel(channel);
    if (activityId === undefined) return;
    restockMessages.inc();
    if (flags.clear(activityId)) log.info({ activityId }, "restock: sold-out flag cleared");
  };
  subscriber.on("pmessage", onMessage);
  await subscriber.psubscribe(RESTOCK_PATTERN);
  return async () => {
    subscriber.off("pmessage", onMessage);
    await subscriber.punsubscribe(RESTOCK_PATTERN).catch(() => {});
  };
}
