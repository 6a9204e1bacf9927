/**
 * The self-heal loop, run at start and every SELF_HEAL_INTERVAL_MS by every
 * admin instance (all its writes are idempotent):
 *  - every published (or ended-after-publishing) activity whose etcd entry is
 *    missing, older than MySQL's revision, or different at the same revision is
 *    pushed again (core WarmUp first, then etcd), so an etcd that lost its data
 *    recovers, and a push that failed after the MySQL commit completes;
 *  - the blacklist mirror in Redis is repaired from MySQL, expired entries purged.
 */

import type { Logger } from "../../shared/src/runtime/log.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import {
  ACTIVITIES_PREFIX,
  activityKey,
  encodeActivity,
} from "../../shared/src/sale/activities.ts";
import type { Etcd3 } from "../../shared/src/stores/etcd.ts";
import type { Blacklist } from "./blacklist.ts";
import { selfHealRepairs, selfHealRuns } from "./metrics.ts";
import { type Propagator, storedRevision } from "./publisher.ts";
import type { CatalogStore } from "./store.ts";
import { activityMessage } from "./views.ts";

export interface SelfHealDeps {
  store: CatalogStore;
  propagator: Propagator;
  blacklist: Blacklist;
  etcd: Etcd3;
  log: Logger;
  intervalMs: number;
}

export interface SelfHealReport {
  checked: number;
  repaired: { id: string; why: string }[];
  failed: { id: string; err: string }[];
}

export class SelfHeal {
  private loop: Promise<void> | undefined;
  private running: Promise<SelfHealReport> | undefined;

  constructor(private readonly deps: SelfHealDeps) {}

  /** Runs now, then every interval until `signal` aborts. */
  start(signal: AbortSignal): void {
    this.loop = (async () => {
      while (!signal.aborted) {
        await this.runOnce().catch(() => {});
        // sleep() only wakes on an abort that happens while it waits.
        if (signal.aborted) break;
        await sleep(this.deps.intervalMs, signal);
      }
    })();
  }

  async stop(): Promise<void> {
    await this.loop;
  }

  /** One pass (concurrent callers share it). */
  runOnce(): Promise<SelfHealReport> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<SelfHealReport> {
    const { log } = this.deps;
    try {
      const report = await this.activities();
      await this.deps.blacklist.repairMirror().catch((err: unknown) => {
        log.warn({ err: String(err) }, "self-heal: blacklist mirror repair failed");
        throw err;
      });
      selfHealRuns.inc({ outcome: report.failed.length === 0 ? "ok" : "error" });
      if (report.repaired.length > 0 || report.failed.length > 0)
        log.info(report, "self-heal pass done");
      else log.debug({ checked: report.checked }, "self-heal pass: etcd matches MySQL");
      return report;
    } catch (err) {
      selfHealRuns.inc({ outcome: "error" });
      log.warn({ err: String(err) }, "self-heal pass failed; next one in a while");
      throw err;
    }
  }

  private async activities(): Promise<SelfHealReport> {
    const { store, etcd, propagator, log } = this.deps;
    const rows = await store.publishedActivities();
    const inEtcd = await etcd.getAll().prefix(ACTIVITIES_PREFIX).strings();
    const report: SelfHealReport = { checked: rows.length, repaired: [], failed: [] };
    for (const row of rows) {
      const current = inEtcd[activityKey(row.id)];
      let why: "etcd_missing" | "etcd_stale" | "etcd_differs";
      if (current === undefined) why = "etcd_missing";
      else {
        const revision = storedRevision(current);
        if (revision > BigInt(row.revision)) {
          log.warn(
            { activityId: row.id, etcdRevision: Number(revision), mysqlRevision: row.revision },
            "self-heal: etcd holds a newer revision than MySQL; left alone",
          );
          continue;
        }
        if (revision < BigInt(row.revision)) why = "etcd_stale";
        else if (current !== encodeActivity(activityMessage(row))) why = "etcd_differs";
        else continue;
      }
      try {
        await propagator.propagate(row, "self_heal");
        selfHealRepairs.inc({ what: why });
        report.repaired.push({ id: row.id, why });
        log.info(
          { activityId: row.id, revision: row.revision, why },
          "self-heal: activity written to etcd again",
        );
      } catch (err) {
        report.failed.push({ id: row.id, err: err instanceof Error ? err.message : String(err) });
      }
    }
    return report;
  }
}
