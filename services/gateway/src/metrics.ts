import { counter, gauge, once } from "../../shared/src/runtime/metrics.ts";
import type { SoldOutMetrics } from "../../shared/src/sale/sold-out.ts";

export type RefusalReason =
  | "ip_blacklisted"
  | "rate_limited_ip"
  | "rate_limited_global"
  | "rate_limited_user"
  | "unauthenticated"
  | "permission_denied"
  | "body_user_mismatch";

/** Calls the edge answered with an error itself, without forwarding them. */
export const refusals = once("seckill_gateway_refusals_total", () =>
  counter("seckill_gateway_refusals_total", "Calls refused at the edge, by reason.", [
    "reason",
    "service",
  ]),
);

/** Buy answered SOLD_OUT at the edge from the local flag. */
export const soldOutShortCircuits = once("seckill_gateway_sold_out_short_circuits_total", () =>
  counter(
    "seckill_gateway_sold_out_short_circuits_total",
    "Buy calls answered SOLD_OUT at the edge without reaching seckill-app.",
  ),
);

/** A retry of a request id this instance forwarded before passes the sold-out flag. */
export const soldOutRetriesPassed = once("seckill_gateway_sold_out_retries_passed_total", () =>
  counter(
    "seckill_gateway_sold_out_retries_passed_total",
    "Buy retries (request id seen before) forwarded despite a sold-out flag, to get their original answer.",
  ),
);

export const soldOutFlagsGauge = once("seckill_gateway_sold_out_flags", () =>
  gauge("seckill_gateway_sold_out_flags", "Activities this instance currently knows sold out."),
);

export const restockMessages = once("seckill_gateway_restock_messages_total", () =>
  counter("seckill_gateway_restock_messages_total", "Restock messages received from core."),
);

/** The gateway's sold-out flags (shared/src/sale/sold-out.ts) count here. */
export const soldOutMetrics: SoldOutMetrics = {
  changed: (_change, size) => soldOutFlagsGauge.set(size),
  restocked: () => restockMessages.inc(),
};

/** Clients that sent trusted identity headers themselves (stripped). */
export const spoofedIdentityHeaders = once("seckill_gateway_spoofed_identity_headers_total", () =>
  counter(
    "seckill_gateway_spoofed_identity_headers_total",
    "Requests that carried x-seckill-* identity headers from the client; they were removed.",
  ),
);

export const trackedIps = once("seckill_gateway_rate_limit_tracked_keys", () =>
  gauge("seckill_gateway_rate_limit_tracked_keys", "Token buckets held in memory, by kind.", [
    "kind",
  ]),
);

export const jwksFetchErrors = once("seckill_gateway_jwks_fetch_errors_total", () =>
  counter(
    "seckill_gateway_jwks_fetch_errors_total",
    "Failed fetches of auth's public keys (cached keys stay in use).",
  ),
);

export const forwarded = once("seckill_gateway_forwarded_total", () =>
  counter("seckill_gateway_forwarded_total", "Calls forwarded upstream, by service and outcome.", [
    "upstream",
    "method",
    "code",
  ]),
);
