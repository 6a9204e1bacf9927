/** admin's metrics (besides the RPC metrics every service has). */
import { counter, gauge, histogram, once } from "../../shared/src/runtime/metrics.ts";

export const catalogChanges = once("seckill_admin_catalog_changes_total", () =>
  counter(
    "seckill_admin_catalog_changes_total",
    "Products and activities created or changed, by entity, op and the activity's stored status.",
    ["entity", "op", "status"],
  ),
);

export const publishes = once("seckill_admin_activity_publishes_total", () =>
  counter(
    "seckill_admin_activity_publishes_total",
    "PublishActivity calls by outcome (published, republished, failed).",
    ["outcome"],
  ),
);

export const publishedUpdates = once("seckill_admin_published_updates_total", () =>
  counter(
    "seckill_admin_published_updates_total",
    "Changes of a published activity pushed to core and etcd, by kind (update, end, product) and outcome.",
    ["kind", "outcome"],
  ),
);

export const propagationSeconds = once("seckill_admin_propagation_seconds", () =>
  histogram(
    "seckill_admin_propagation_seconds",
    "From the MySQL commit to the etcd write of an activity definition (core WarmUp included).",
    ["source"],
  ),
);

export const propagationFailures = once("seckill_admin_propagation_failures_total", () =>
  counter(
    "seckill_admin_propagation_failures_total",
    "Activity definitions not pushed, by step (stock_check, warm_up, etcd) and source (rpc, self_heal).",
    ["step", "source"],
  ),
);

export const selfHealRepairs = once("seckill_admin_self_heal_repairs_total", () =>
  counter(
    "seckill_admin_self_heal_repairs_total",
    "Repairs made by the self-heal loop, by what (etcd_missing, etcd_stale, etcd_differs, blacklist_put, blacklist_removed, blacklist_expired).",
    ["what"],
  ),
);

export const selfHealRuns = once("seckill_admin_self_heal_runs_total", () =>
  counter("seckill_admin_self_heal_runs_total", "Self-heal passes by outcome (ok, error).", [
    "outcome",
  ]),
);

export const blacklistChanges = once("seckill_admin_blacklist_changes_total", () =>
  counter("seckill_admin_blacklist_changes_total", "Blacklist adds and removals by kind.", [
    "op",
    "kind",
  ]),
);

export const reconcileMismatches = once("seckill_admin_reconcile_mismatches", () =>
  gauge(
    "seckill_admin_reconcile_mismatches",
    "Mismatches found by the last Reconcile of each activity (0 = consistent).",
    ["activity"],
  ),
);

export const reconcileRuns = once("seckill_admin_reconcile_runs_total", () =>
  counter(
    "seckill_admin_reconcile_runs_total",
    "Activities reconciled, by outcome (ok, mismatch, error).",
    ["outcome"],
  ),
);

export const reconcileSeconds = once("seckill_admin_reconcile_seconds", () =>
  histogram(
    "seckill_admin_reconcile_seconds",
    "Time to reconcile one activity.",
    [],
    [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  ),
);
