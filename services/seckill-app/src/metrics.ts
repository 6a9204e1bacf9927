/**
 * seckill-app's own metrics (RPC latency and status codes come from the shared
 * interceptors; in-flight and queued gauges from admission.ts). Hot-path
 * series are bound once to their labels (prom-client children), so a request
 * pays no label hashing.
 */
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { counter, histogram, once } from "../../shared/src/runtime/metrics.ts";
import type { SoldOutMetrics } from "../../shared/src/sale/sold-out.ts";

export const buyResults = once("seckill_app_buy_results_total", () =>
  counter(
    "seckill_app_buy_results_total",
    "Buy answers by BuyResult and by who decided: app (local checks, Redis gate) or core.",
    ["result", "by"],
  ),
);

export const shed = once("seckill_app_shed_total", () =>
  counter(
    "seckill_app_shed_total",
    "Calls refused by admission control (Buy: OVERLOADED; GetBuyToken: RESOURCE_EXHAUSTED).",
    ["gate"],
  ),
);

/** Fine buckets: the local stages take microseconds, the remote ones a millisecond or more. */
const stageBuckets = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5, 5,
];

export const buyStageSeconds = once("seckill_app_buy_stage_seconds", () =>
  histogram(
    "seckill_app_buy_stage_seconds",
    "Buy stages: token (HMAC check), admission (wait for a slot), rate_limit (the Redis rate-limit + token-claim script), core (batched Reserve).",
    ["stage"],
    stageBuckets,
  ),
);

export const tokenOutcomes = once("seckill_app_buy_tokens_total", () =>
  counter(
    "seckill_app_buy_tokens_total",
    "GetBuyToken answers: issued, not_started, ended, blacklisted, rate_limited, shed.",
    ["outcome"],
  ),
);

export const soldOutFlagChanges = once("seckill_app_sold_out_flag_changes_total", () =>
  counter(
    "seckill_app_sold_out_flag_changes_total",
    "Local sold-out flags set (core said sold_out), cleared by a restock message, or expired.",
    ["change"],
  ),
);

export const restockMessages = once("seckill_app_restock_messages_total", () =>
  counter("seckill_app_restock_messages_total", "Restock messages received from core."),
);

/** seckill-app's sold-out flags (shared/src/sale/sold-out.ts) count here. */
export const soldOutMetrics: SoldOutMetrics = {
  changed: (change) => soldOutFlagChanges.inc({ change }),
  restocked: () => restockMessages.inc(),
};

// Bound children for the hot path.
type Inc = { inc(n?: number): void };
type Observe = { observe(v: number): void };

const resultChildren = new Map<string, Inc>();
export function countResult(result: BuyResult, by: "app" | "core"): void {
  const key = `${result}|${by}`;
  let child = resultChildren.get(key);
  if (!child) {
    child = buyResults.labels({ result: BuyResult[result] ?? String(result), by });
    resultChildren.set(key, child);
  }
  child.inc();
}

export const stage = {
  token: buyStageSeconds.labels({ stage: "token" }) as Observe,
  admission: buyStageSeconds.labels({ stage: "admission" }) as Observe,
  rateLimit: buyStageSeconds.labels({ stage: "rate_limit" }) as Observe,
  core: buyStageSeconds.labels({ stage: "core" }) as Observe,
};

export const shedBuy = shed.labels({ gate: "buy" }) as Inc;
export const shedToken = shed.labels({ gate: "token" }) as Inc;
