/**
 * Local sold-out flags, kept by every instance on the buy path (gateway,
 * seckill-app, seckill-core): once an answer says an activity has no stock
 * left, later buyers of it are refused without going further, until core's
 * restock message (published on the activity's restock channel, data-plane
 * keys.ts, when a Release returns stock) or a short TTL clears the flag.
 */
import type { Redis } from "ioredis";
import { activityOfRestockChannel, RESTOCK_PATTERN } from "../data-plane/keys.ts";
import type { Logger } from "../runtime/log.ts";

export type FlagChange = "set" | "expired" | "restock";

/** How a service counts its flags: each passes its own metrics (the names differ per service). */
export interface SoldOutMetrics {
  /** Every change, with the number of flags up afterwards. */
  changed?(change: FlagChange, size: number): void;
  /** Every restock message received (listenForRestock). */
  restocked?(): void;
}

export class SoldOutFlags {
  private readonly until = new Map<string, number>();
  /** Bumped whenever a flag goes up or down, so derived views know to recompute. */
  version = 0;

  /**
   * @param ttlMs life of a flag without a restock message; 0 turns the flags off
   * @param metrics the service's counters of flag changes and restock messages
   */
  constructor(
    readonly ttlMs: number,
    private readonly now: () => number = Date.now,
    readonly metrics: SoldOutMetrics = {},
  ) {}

  has(activityId: string, nowMs = this.now()): boolean {
    const until = this.until.get(activityId);
    if (until === undefined) return false;
    if (nowMs < until) return true;
    this.until.delete(activityId);
    this.changed("expired");
    return false;
  }

  /** Raises (or extends) the flag; true when it was not up. */
  mark(activityId: string, nowMs = this.now()): boolean {
    if (this.ttlMs <= 0) return false;
    const fresh = !this.has(activityId, nowMs);
    this.until.set(activityId, nowMs + this.ttlMs);
    if (fresh) this.changed("set");
    return fresh;
  }

  /** Drops the flag; true when it was up. */
  clear(activityId: string): boolean {
    if (!this.until.delete(activityId)) return false;
    this.changed("restock");
    return true;
  }

  /** When the first flag expires by itself (epoch ms), or Infinity. */
  nextExpiry(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const until of this.until.values()) if (until < min) min = until;
    return min;
  }

  /** Activities flagged right now. */
  list(): string[] {
    return [...this.until.keys()].filter((id) => this.has(id));
  }

  get size(): number {
    return this.until.size;
  }

  private changed(change: FlagChange) {
    this.version++;
    this.metrics.changed?.(change, this.until.size);
  }
}

/**
 * Clears flags on restock messages. `subscriber` is a connection in subscriber
 * mode (it may be shared with other subscriptions); ioredis re-subscribes after
 * a reconnect. Each message counts in the flags' `metrics.restocked`.
 * Resolves once subscribed, with a function that unsubscribes.
 */
export async function listenForRestock(
  subscriber: Redis,
  flags: SoldOutFlags,
  log: Logger,
): Promise<() => Promise<void>> {
  const handle = (_pattern: string, channel: string) => {
    const activityId = activityOfRestockChannel(channel);
    if (activityId === undefined) return;
    flags.metrics.restocked?.();
    if (flags.clear(activityId)) log.debug({ activityId }, "restock: sold-out flag cleared");
  };
  subscriber.on("pmessage", handle);
  await subscriber.psubscribe(RESTOCK_PATTERN);
  return async () => {
    subscriber.off("pmessage", handle);
    await subscriber.punsubscribe(RESTOCK_PATTERN).catch(() => {});
  };
}
