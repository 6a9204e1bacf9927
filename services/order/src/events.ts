/**
 * Live order status across instances: every state change is published on
 * `order:<id>` (message: the new status name); each instance has ONE
 * subscriber connection, shared by all of its WatchOrder streams, subscribed
 * to a channel while at least one stream watches that order.
 */
import { orderChannel } from "../../shared/src/data-plane/keys.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { Redis } from "../../shared/src/stores/redis.ts";
import { eventsPublished, watchedOrders } from "./metrics.ts";

export type Listener = (status: string) => void;

export class OrderEvents {
  private readonly channels = new Map<string, { listeners: Set<Listener>; ready: Promise<void> }>();

  constructor(
    private readonly publisher: Redis,
    /** A dedicated connection: once subscribed it can run no other command. */
    private readonly subscriber: Redis,
    private readonly log: Logger,
  ) {
    subscriber.on("message", (channel: string, message: string) => {
      const entry = this.channels.get(channel);
      if (entry) for (const listener of [...entry.listeners]) listener(message);
    });
  }

  /**
   * Best effort and not awaited: a state change never waits for (or fails on)
   * Redis; a lost message is covered by the watchers' periodic re-read.
   */
  publish(orderId: string, status: string): void {
    this.publisher.publish(orderChannel(orderId), status).then(
      () => eventsPublished.inc({ status }),
      (err) =>
        this.log.warn({ orderId, status, err: String(err) }, "publishing an order change failed"),
    );
  }

  /**
   * Calls `listener` with each status published for the order until the
   * returned function runs. Resolves once the subscription is in place (or
   * failed: then the watcher still has its periodic re-read).
   */
  async listen(orderId: string, listener: Listener): Promise<() => Promise<void>> {
    const channel = orderChannel(orderId);
    let entry = this.channels.get(channel);
    if (!entry) {
      // Commands on one connection run in order, so a later UNSUBSCRIBE cannot overtake this.
      const ready = this.subscriber.subscribe(channel).then(
        () => {},
        (err) =>
          this.log.warn({ orderId, err: String(err) }, "subscribing to order changes failed"),
      );
      entry = { listeners: new Set(), ready };
      this.channels.set(channel, entry);
      watchedOrders.set(this.channels.size);
    }
    entry.listeners.add(listener);
    await entry.ready;
    const mine = entry;
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      mine.listeners.delete(listener);
      if (mine.listeners.size === 0 && this.channels.get(channel) === mine) {
        this.channels.delete(channel);
        watchedOrders.set(this.channels.size);
        await this.subscriber.unsubscribe(channel).catch(() => {});
      }
    };
  }

  close(): void {
    this.channels.clear();
    watchedOrders.set(0);
  }
}
