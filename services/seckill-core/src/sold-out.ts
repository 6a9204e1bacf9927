/**
 * The local sold-out flags of one core instance: once an answer says an
 * activity has no stock left, later buyers of it are refused without running
 * the reservation script, until a restock message (a Release returned stock)
 * or a short TTL clears the flag.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../../shared/src/log.ts";
import { activityOfRestockChannel, RESTOCK_PATTERN } from "./keys.ts";
import { restockMessages } from "./metrics.ts";

export class SoldOutFlags {
  private readonly until = new Map<string, number>();

  /** `ttlMs` 0 turns the flags off. */
  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(activityId: string): boolean {
    const until = this.until.get(activityId);
    if (until === undefined) return false;
    if (this.now() < until) return true;
    this.until.delete(activityId);
    return false;
  }

  /** Flags the activity for the TTL; true when it was not flagged already. */
  mark(activityId: string): boolean {
    if (this.ttlMs <= 0) return false;
    const fresh = !this.has(activityId);
    this.until.set(activityId, this.now() + this.ttlMs);
    return fresh;
  }

  clear(activityId: string): void {
    this.until.delete(activityId);
  }

  get size(): number {
    return this.until.size;
  }
}

/**
 * Clears the flags on every restock message. `subscriber` must be a connection
 * of its own (a subscribed connection runs no other command); ioredis
 * re-subscribes by itself after a reconnect. Resolves once subscribed.
 */
export async function listenForRestock(
  subscriber: Redis,
  flags: SoldOutFlags,
  log: Logger,
): Promise<void> {
  subscriber.on("pmessage", (_pattern: string, channel: string) => {
    const activityId = activityOfRestockChannel(channel);
    if (activityId === undefined) return;
    restockMessages.inc();
    if (flags.has(activityId)) log.debug({ activityId }, "restock: sold-out flag cleared");
    flags.clear(activityId);
  });
  await subscriber.psubscribe(RESTOCK_PATTERN);
}
