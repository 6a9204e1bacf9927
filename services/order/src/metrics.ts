/**
 * All of the order service's own metrics (the RPC metrics come from the shared
 * interceptors), one place for names, labels and help texts.
 */
import { counter, gauge, histogram, once } from "../../shared/src/runtime/metrics.ts";

// The stream consumer (consumer.ts).

export const consumedEntries = once("seckill_order_consumed_total", () =>
  counter(
    "seckill_order_consumed_total",
    "Stream entries handled by the order consumer, by outcome: inserted (new row), duplicate (row existed: a redelivery), dead_lettered (malformed), deleted (entry no longer in the stream).",
    ["activity", "outcome"],
  ),
);
export const consumerBatchSizes = once("seckill_order_consumer_batch_size", () =>
  histogram(
    "seckill_order_consumer_batch_size",
    "Entries per consumed batch (one MySQL transaction).",
    ["activity"],
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
  ),
);
export const insertSeconds = once("seckill_order_insert_seconds", () =>
  histogram("seckill_order_insert_seconds", "Time to insert and commit one batch of orders.", [
    "activity",
  ]),
);
export const intentAge = once("seckill_order_intent_age_seconds", () =>
  histogram(
    "seckill_order_intent_age_seconds",
    "From reservation (entry ts) to the committed order row.",
    ["activity"],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  ),
);
export const reclaimedEntries = once("seckill_order_consumer_reclaimed_total", () =>
  counter(
    "seckill_order_consumer_reclaimed_total",
    "Entries taken over from other consumers with XAUTOCLAIM after CLAIM_IDLE_MS.",
    ["activity"],
  ),
);
export const consumerErrors = once("seckill_order_consumer_errors_total", () =>
  counter(
    "seckill_order_consumer_errors_total",
    "Consumer failures by stage (read, insert, ack, claim, group, stats); the entries stay pending.",
    ["activity", "stage"],
  ),
);
export const streamPending = once("seckill_order_stream_pending", () =>
  gauge(
    "seckill_order_stream_pending",
    "Entries delivered to the group and not yet acknowledged (XPENDING count).",
    ["activity"],
  ),
);
export const streamLag = once("seckill_order_stream_lag", () =>
  gauge(
    "seckill_order_stream_lag",
    "Entries in the stream not yet delivered to the group (XINFO GROUPS lag).",
    ["activity"],
  ),
);
export const streamLength = once("seckill_order_stream_length", () =>
  gauge("seckill_order_stream_length", "Entries in the stream (XLEN).", ["activity"]),
);
export const consumerLoops = once("seckill_order_consumer_loops", () =>
  gauge("seckill_order_consumer_loops", "Activities this instance is consuming."),
);

// Live order status (events.ts).

export const eventsPublished = once("seckill_order_events_published_total", () =>
  counter("seckill_order_events_published_total", "Order status changes published on order:<id>.", [
    "status",
  ]),
);
export const watchedOrders = once("seckill_order_watched_orders", () =>
  gauge("seckill_order_watched_orders", "Orders with at least one WatchOrder stream here."),
);

// Order operations (orders.ts).

export const stateChanges = once("seckill_order_state_changes_total", () =>
  counter(
    "seckill_order_state_changes_total",
    "Order transitions won by this instance, by new status and cause (pay, user, admin, timeout).",
    ["status", "cause"],
  ),
);
export const refusals = once("seckill_order_refusals_total", () =>
  counter(
    "seckill_order_refusals_total",
    "Pay / Cancel calls refused with FAILED_PRECONDITION, by operation and reason.",
    ["op", "reason"],
  ),
);

// Telling core about final orders (settlement.ts).

export const settlements = once("seckill_order_settlements_total", () =>
  counter(
    "seckill_order_settlements_total",
    "Calls telling core about a final order, by kind (confirm, release) and result (settled, retry, conflict).",
    ["kind", "result"],
  ),
);

// The sweepers (timeouts.ts).

export const expiredOrders = once("seckill_order_expired_total", () =>
  counter(
    "seckill_order_expired_total",
    "Orders cancelled by this instance because the payment deadline passed.",
  ),
);
export const sweepSeconds = once("seckill_order_sweep_seconds", () =>
  histogram("seckill_order_sweep_seconds", "One sweeper round.", ["sweeper"]),
);
export const sweepErrors = once("seckill_order_sweep_errors_total", () =>
  counter("seckill_order_sweep_errors_total", "Sweeper rounds that failed.", ["sweeper"]),
);
