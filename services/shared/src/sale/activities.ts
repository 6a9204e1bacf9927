import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Etcd3 } from "etcd3";
import { type Activity, ActivitySchema } from "../../../gen/seckill/common/v1/common_pb.ts";
import { PrefixWatch } from "../mesh/prefix-watch.ts";
import type { Logger } from "../runtime/log.ts";
import { gauge, once } from "../runtime/metrics.ts";

export const ACTIVITIES_PREFIX = "/seckill/activities/";
export const activityKey = (id: string) => `${ACTIVITIES_PREFIX}${id}`;

/** The JSON admin writes to etcd: protobuf JSON, so every reader decodes it the same way. */
export const encodeActivity = (activity: Activity) => toJsonString(ActivitySchema, activity);
export const decodeActivity = (json: string) =>
  fromJsonString(ActivitySchema, json, { ignoreUnknownFields: true });

export type SalePhase = "NOT_STARTED" | "LIVE" | "ENDED";

/** Where the clock stands relative to the activity's window. */
export function salePhase(activity: Activity, nowMs = Date.now()): SalePhase {
  const start = activity.startTime ? timestampMs(activity.startTime) : 0;
  const end = activity.endTime ? timestampMs(activity.endTime) : Number.POSITIVE_INFINITY;
  if (nowMs < start) return "NOT_STARTED";
  if (nowMs >= end) return "ENDED";
  return "LIVE";
}

const catalogSize = once("seckill_activity_catalog_size", () =>
  gauge("seckill_activity_catalog_size", "Activities in this instance's snapshot of etcd."),
);
const catalogRevision = once("seckill_activity_catalog_revision", () =>
  gauge("seckill_activity_catalog_revision", "etcd revision of this instance's activity snapshot."),
);

export type CatalogListener = (
  activities: ReadonlyMap<string, Activity>,
  changed: readonly Activity[],
) => void;

/**
 * An in-memory snapshot of every published activity, kept current from etcd
 * (read all, then watch; re-read after compaction; the last snapshot stays
 * while etcd is down). Changes made by admin reach it in milliseconds.
 */
export class ActivityCatalog {
  private activities = new Map<string, Activity>();
  private readonly raw = new Map<string, string>();
  private readonly listeners = new Set<CatalogListener>();
  private readonly watch: PrefixWatch;

  constructor(
    etcd: Etcd3,
    private readonly log: Logger,
  ) {
    this.watch = new PrefixWatch({
      etcd,
      prefix: ACTIVITIES_PREFIX,
      log,
      onChange: (e) => this.update(e),
    });
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  get(id: string): Activity | undefined {
    return this.activities.get(id);
  }

  list(): Activity[] {
    return [...this.activities.values()];
  }

  /** Calls `listener` on every change with the activities whose definition changed. */
  subscribe(listener: CatalogListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): Promise<void> {
    this.listeners.clear();
    return this.watch.close();
  }

  private update(entries: ReadonlyMap<string, string>): void {
    const next = new Map<string, Activity>();
    const changed: Activity[] = [];
    for (const [key, json] of entries) {
      const id = key.slice(ACTIVITIES_PREFIX.length);
      const previous = this.activities.get(id);
      if (previous && this.raw.get(id) === json) {
        next.set(id, previous);
        continue;
      }
      try {
        const activity = decodeActivity(json);
        next.set(id, activity);
        this.raw.set(id, json);
        changed.push(activity);
      } catch (err) {
        this.log.warn({ key, err: String(err) }, "ignoring a malformed activity in etcd");
        if (previous) next.set(id, previous);
      }
    }
    for (const id of this.raw.keys()) if (!next.has(id)) this.raw.delete(id);
    this.activities = next;
    catalogSize.set(next.size);
    catalogRevision.set(this.watch.revision);
    if (changed.length > 0)
      this.log.info({ changed: changed.map((a) => `${a.id}@${a.revision}`) }, "activities changed");
    for (const listener of this.listeners) listener(next, changed);
  }
}
