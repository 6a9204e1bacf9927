/**
 * Activity definitions into Redis, from two sources through one path: the
 * WarmUp RPC (admin, on publish and later changes; may create the stock) and
 * the etcd activity catalog every core watches (updates a warmed activity, so
 * a new per-user limit or end time is enforced within moments of admin's
 * write). The script ignores revisions older than the stored one, so any
 * number of cores applying the same change is harmless.
 */
import type { Activity } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import { type ActivityDefinition, DefinitionError, toDefinition } from "./activity.ts";
import { warmUps } from "./metrics.ts";
import type { StockStore, WarmUpResult } from "./store.ts";

export type WarmUpSource = "rpc" | "catalog";

/** Writes a checked definition; counts and logs what happened. */
export async function applyDefinition(
  store: StockStore,
  def: ActivityDefinition,
  source: WarmUpSource,
  log: Logger,
): Promise<WarmUpResult> {
  let result: WarmUpResult;
  try {
    result = await store.warmUp(def, { create: source === "rpc" });
  } catch (err) {
    warmUps.inc({ source, outcome: "error" });
    throw err;
  }
  const outcome = !result.alreadyWarm
    ? result.applied
      ? "created"
      : "not_warm"
    : result.applied
      ? "updated"
      : "stale";
  warmUps.inc({ source, outcome });
  const fields = {
    activityId: def.id,
    revision: def.revision,
    storedRevision: result.revision,
    source,
    outcome,
  };
  if (outcome === "created") log.info({ ...fields, total: def.totalStock }, "activity warmed up");
  else if (outcome === "updated") log.info(fields, "activity definition applied");
  else log.debug(fields, "activity definition not applied");
  if (result.alreadyWarm && result.applied && def.totalStock !== result.total) {
    log.warn(
      { activityId: def.id, total: result.total, requested: def.totalStock },
      "total_stock cannot change after the first warm-up; the stored total is kept",
    );
  }
  return result;
}

export interface CatalogSyncOptions {
  catalog: ActivityCatalog;
  store: StockStore;
  log: Logger;
  /** Wait before applying again a definition that failed (Redis unreachable). */
  retryMs?: number;
}

/**
 * Applies every changed activity of the catalog to Redis. A failed write is
 * retried (the latest definition of each activity wins) until it succeeds or
 * the sync is closed; an invalid definition is logged and skipped.
 */
export class CatalogSync {
  private readonly pending = new Map<string, Activity>();
  private draining: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(private readonly opts: CatalogSyncOptions) {}

  /** Subscribes to the catalog; call before `catalog.start()` to see the first full read too. */
  start(): void {
    this.unsubscribe = this.opts.catalog.subscribe((_all, changed) => {
      for (const activity of changed) this.pending.set(activity.id, activity);
      this.kick();
    });
  }

  /** Resolves when nothing is pending (for tests and start-up). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.draining;
  }

  private kick(): void {
    if (this.closed || this.draining) return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0 && !this.closed) {
      const batch = [...this.pending.values()];
      this.pending.clear();
      const failed: Activity[] = [];
      await Promise.all(
        batch.map((activity) =>
          this.apply(activity).catch((err: unknown) => {
            failed.push(activity);
            this.opts.log.warn(
              { activityId: activity.id, err: String(err) },
              "applying an activity definition failed; will retry",
            );
          }),
        ),
      );
      // A newer definition that arrived meanwhile replaces the failed one.
      for (const activity of failed)
        if (!this.pending.has(activity.id)) this.pending.set(activity.id, activity);
      if (failed.length > 0) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, this.opts.retryMs ?? 1000);
        this.retryTimer.unref();
        return;
      }
    }
  }

  private async apply(activity: Activity): Promise<void> {
    let def: ActivityDefinition;
    try {
      def = toDefinition(activity);
    } catch (err) {
      if (!(err instanceof DefinitionError)) throw err;
      warmUps.inc({ source: "catalog", outcome: "invalid" });
      // Drafts never reach etcd; anything else here is admin's bug: say so, keep serving.
      this.opts.log.warn({ activityId: activity.id, err: err.message }, "ignoring an activity");
      return;
    }
    await applyDefinition(this.opts.store, def, "catalog", this.opts.log);
  }
}
