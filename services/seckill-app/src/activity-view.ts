/**
 * The buyer's view of the activity snapshot: only published activities, with
 * the status derived from the window, the clock and the local sold-out flags
 * (LIVE / SOLD_OUT / ENDED; PUBLISHED before the start).
 *
 * Work is done when something changes, not per request: each catalog change
 * precomputes the windows in epoch ms; the derived list (sorted) and the
 * per-id derived messages are cached until the next window boundary, the next
 * sold-out flag expiry, or a change of the catalog or of a flag.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Activity, ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { SalePhase } from "../../shared/src/sale/activities.ts";
import type { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";

export interface SaleEntry {
  /** As written by admin. */
  readonly activity: Activity;
  readonly startMs: number;
  readonly endMs: number;
  /** Ended early by admin (stored status ENDED). */
  readonly endedEarly: boolean;
}

/** Where the clock stands for this entry; an activity ended early is ENDED whatever the window. */
export function phaseOf(entry: SaleEntry, nowMs: number): SalePhase {
  if (entry.endedEarly || nowMs >= entry.endMs) return "ENDED";
  if (nowMs < entry.startMs) return "NOT_STARTED";
  return "LIVE";
}

const visible = new Set([
  ActivityStatus.PUBLISHED,
  ActivityStatus.LIVE,
  ActivityStatus.SOLD_OUT,
  ActivityStatus.ENDED,
]);

interface Derived {
  catalogVersion: number;
  flagsVersion: number;
  validUntil: number;
  list: Activity[];
  byId: Map<string, Activity>;
}

export class ActivityView {
  private entries = new Map<string, SaleEntry>();
  private catalogVersion = 0;
  private derived: Derived | undefined;

  constructor(
    private readonly flags: SoldOutFlags,
    private readonly log?: Logger,
  ) {}

  /** Takes the catalog's new snapshot (ActivityCatalog.subscribe calls this). */
  apply(activities: ReadonlyMap<string, Activity>): void {
    const next = new Map<string, SaleEntry>();
    for (const [id, activity] of activities) {
      if (!visible.has(activity.status)) continue;
      const previous = this.entries.get(id);
      if (previous && activity.revision < previous.activity.revision) {
        // Readers ignore an older revision than the one they hold (common.proto).
        this.log?.warn(
          { activityId: id, held: previous.activity.revision, got: activity.revision },
          "ignoring an older revision of an activity",
        );
        next.set(id, previous);
        continue;
      }
      next.set(
        id,
        previous?.activity === activity
          ? previous
          : {
              activity,
              startMs: activity.startTime ? timestampMs(activity.startTime) : 0,
              endMs: activity.endTime ? timestampMs(activity.endTime) : Number.POSITIVE_INFINITY,
              endedEarly: activity.status === ActivityStatus.ENDED,
            },
      );
    }
    this.entries = next;
    this.catalogVersion++;
  }

  /** A published activity's entry, or undefined (unknown, or not published). */
  entry(id: string): SaleEntry | undefined {
    return this.entries.get(id);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Every published activity, by start time, with derived statuses. Do not mutate. */
  list(nowMs = Date.now()): readonly Activity[] {
    return this.current(nowMs).list;
  }

  /** One published activity with its derived status, or undefined. Do not mutate. */
  get(id: string, nowMs = Date.now()): Activity | undefined {
    return this.current(nowMs).byId.get(id);
  }

  private current(nowMs: number): Derived {
    const d = this.derived;
    if (
      d &&
      nowMs < d.validUntil &&
      d.catalogVersion === this.catalogVersion &&
      d.flagsVersion === this.flags.version
    )
      return d;
    return this.recompute(nowMs);
  }

  private recompute(nowMs: number): Derived {
    const byId = new Map<string, Activity>();
    let validUntil = Number.POSITIVE_INFINITY;
    const sorted = [...this.entries.values()].sort(
      (a, b) => a.startMs - b.startMs || (a.activity.id < b.activity.id ? -1 : 1),
    );
    const list: Activity[] = [];
    for (const entry of sorted) {
      const status = this.statusOf(entry, nowMs);
      const derived =
        status === entry.activity.status ? entry.activity : { ...entry.activity, status };
      byId.set(entry.activity.id, derived);
      list.push(derived);
      if (!entry.endedEarly) {
        if (nowMs < entry.startMs) validUntil = Math.min(validUntil, entry.startMs);
        else if (nowMs < entry.endMs) validUntil = Math.min(validUntil, entry.endMs);
      }
    }
    // Read after statusOf: has() may have dropped expired flags (and bumped the version).
    validUntil = Math.min(validUntil, this.flags.nextExpiry());
    this.derived = {
      catalogVersion: this.catalogVersion,
      flagsVersion: this.flags.version,
      validUntil,
      list,
      byId,
    };
    return this.derived;
  }

  private statusOf(entry: SaleEntry, nowMs: number): ActivityStatus {
    switch (phaseOf(entry, nowMs)) {
      case "ENDED":
        return ActivityStatus.ENDED;
      case "NOT_STARTED":
        return ActivityStatus.PUBLISHED;
      default:
        return this.flags.has(entry.activity.id, nowMs)
          ? ActivityStatus.SOLD_OUT
          : ActivityStatus.LIVE;
    }
  }
}
