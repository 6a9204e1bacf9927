/** seckill-core's own metrics (the RPC metrics come from the shared interceptors). */
import { counter, histogram, once } from "../../shared/src/runtime/metrics.ts";
import type { SoldOutMetrics } from "../../shared/src/sale/sold-out.ts";

export const reservations = once("seckill_core_reservations_total", () =>
  counter(
    "seckill_core_reservations_total",
    "Reserve items answered, by BuyResult; replayed = a retried request id got its original answer.",
    ["result", "replayed"],
  ),
);

export const soldOutShortCircuits = once("seckill_core_sold_out_short_circuits_total", () =>
  counter(
    "seckill_core_sold_out_short_circuits_total",
    "Reserve items answered from the local sold-out flag without running the reservation script.",
  ),
);

export const redisSeconds = once("seckill_core_redis_seconds", () =>
  histogram(
    "seckill_core_redis_seconds",
    "Round trip of one Redis script call, or of one Reserve batch pipeline (op=reserve_batch).",
    ["op", "outcome"],
  ),
);

export const reserveBatchSize = once("seckill_core_reserve_batch_size", () =>
  histogram(
    "seckill_core_reserve_batch_size",
    "Items per Reserve RPC.",
    [],
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  ),
);

export const releases = once("seckill_core_releases_total", () =>
  counter(
    "seckill_core_releases_total",
    "Release calls by outcome (released, paid, already_released, not_found) and reason.",
    ["outcome", "reason"],
  ),
);

export const confirmations = once("seckill_core_payment_confirmations_total", () =>
  counter(
    "seckill_core_payment_confirmations_total",
    "ConfirmPayment calls by outcome (confirmed, already_paid, released, not_found).",
    ["outcome"],
  ),
);

export const warmUps = once("seckill_core_warm_ups_total", () =>
  counter(
    "seckill_core_warm_ups_total",
    "Activity definitions applied to Redis, by source (rpc, catalog) and outcome (created, updated, stale, not_warm, invalid, error).",
    ["source", "outcome"],
  ),
);

export const restockMessages = once("seckill_core_restock_messages_total", () =>
  counter(
    "seckill_core_restock_messages_total",
    "Restock messages received; each clears the activity's local sold-out flag.",
  ),
);

/** Core's sold-out flags (shared/src/sale/sold-out.ts) count here. */
export const soldOutMetrics: SoldOutMetrics = { restocked: () => restockMessages.inc() };
