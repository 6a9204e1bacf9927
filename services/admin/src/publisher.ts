/**
 * Pushing an activity definition out, always in this order (the control-plane
 * contract): MySQL is already committed, then core's WarmUp (creates the stock
 * the first time, later only replaces the definition; core ignores an older
 * revision), then the etcd put that every gateway, app and core instance
 * watches. Stock therefore exists in Redis before any app lets buyers in.
 *
 * The etcd write is a compare-and-swap that never replaces a newer revision,
 * so two admin instances pushing two changes in the wrong order leave the
 * newer one in etcd.
 */

import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Activity } from "../../gen/seckill/common/v1/common_pb.ts";
import type { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { activityKey, decodeActivity, encodeActivity } from "../../shared/src/sale/activities.ts";
import type { Etcd3 } from "../../shared/src/stores/etcd.ts";
import { propagationFailures, propagationSeconds } from "./metrics.ts";
import { type ActivityRow, activityMessage } from "./views.ts";

export type CoreClient = Client<typeof SeckillCoreService>;
export type PropagationSource = "rpc" | "self_heal";

/** What the etcd write did: wrote, found the same bytes, or found a newer revision (kept). */
export type EtcdWrite = "written" | "unchanged" | "newer_in_etcd";

export interface Propagated {
  activity: Activity;
  remaining: number;
  /** Core had the stock already (counters kept). */
  alreadyWarm: boolean;
  etcd: EtcdWrite;
}

export interface PropagatorDeps {
  core: CoreClient;
  etcd: Etcd3;
  log: Logger;
  /** Remembers in MySQL that core holds the stock (activities.warmed_at). */
  markWarmed(activityId: string, at: Date): Promise<void>;
}

const codeOf = (err: unknown) => (err instanceof ConnectError ? err.code : Code.Unavailable);
const messageOf = (err: unknown) =>
  err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);

export class Propagator {
  constructor(private readonly deps: PropagatorDeps) {}

  /**
   * Pushes the row's definition (its stored status) to core, then to etcd.
   * Throws a ConnectError naming the failed step; the change stays in MySQL and
   * a retry (or the self-heal loop) pushes it again.
   */
  async propagate(row: ActivityRow, source: PropagationSource): Promise<Propagated> {
    const { core, log } = this.deps;
    const activity = activityMessage(row);
    const started = performance.now();
    const fail = (step: string, err: unknown, code = codeOf(err)) => {
      propagationFailures.inc({ step, source });
      log.warn(
        { activityId: row.id, revision: row.revision, step, source, err: messageOf(err) },
        "pushing an activity definition failed",
      );
      return new ConnectError(
        `activity ${row.id} revision ${row.revision} is saved, but ${step} failed: ${messageOf(err)}. ` +
          "Retry the call (it is idempotent); admin's self-heal loop also pushes it again.",
        code,
      );
    };

    if (row.warmed_at) {
      // Core had the stock once. If it is gone, Redis lost data: creating it again
      // would put units for sale that buyers already hold (oversell). Refuse.
      try {
        await core.getStock({ activityId: row.id });
      } catch (err) {
        if (codeOf(err) === Code.NotFound) {
          propagationFailures.inc({ step: "stock_check", source });
          log.error(
            { activityId: row.id, warmedAt: row.warmed_at.toISOString(), source },
            "the stock of a warmed activity is missing from Redis: not creating it again (restore Redis, then Reconcile)",
          );
          throw new ConnectError(
            `activity ${row.id} revision ${row.revision} is saved, but its stock, warmed up at ${row.warmed_at.toISOString()}, ` +
              "is no longer in Redis: admin will not create it again (units already sold would be sold twice). " +
              "Restore Redis, then run Reconcile.",
            Code.FailedPrecondition,
          );
        }
        throw fail("reading the stock from seckill-core", err);
      }
    }

    let warm: { remaining: bigint; alreadyWarm: boolean };
    try {
      warm = await core.warmUp({ activity });
    } catch (err) {
      // Core refusing the definition itself is admin's bug, not the caller's: INTERNAL.
      const code = codeOf(err);
      throw fail(
        "the warm-up in seckill-core",
        err,
        code === Code.InvalidArgument || code === Code.FailedPrecondition ? Code.Internal : code,
      );
    }
    if (!row.warmed_at) {
      const at = new Date();
      await this.deps
        .markWarmed(row.id, at)
        .catch((err: unknown) =>
          log.warn({ activityId: row.id, err: messageOf(err) }, "recording warmed_at failed"),
        );
    }

    let etcd: EtcdWrite;
    try {
      etcd = await writeActivity(this.deps.etcd, activity);
    } catch (err) {
      throw fail("the etcd write", err, Code.Unavailable);
    }
    propagationSeconds.observe({ source }, (performance.now() - started) / 1000);
    const fields = {
      activityId: row.id,
      revision: row.revision,
      status: row.status,
      source,
      remaining: Number(warm.remaining),
      alreadyWarm: warm.alreadyWarm,
      etcd,
      tookMs: Math.round(performance.now() - started),
    };
    if (etcd === "newer_in_etcd")
      log.warn(fields, "etcd holds a newer revision of this activity: kept it");
    else log.info(fields, "activity definition pushed to core and etcd");
    return { activity, remaining: Number(warm.remaining), alreadyWarm: warm.alreadyWarm, etcd };
  }
}

/**
 * Puts the activity at /seckill/activities/<id> unless etcd holds the same bytes
 * or a higher revision: read, then a transaction on the key's mod revision (or
 * on its absence), retried when another writer got in between.
 */
export async function writeActivity(etcd: Etcd3, activity: Activity): Promise<EtcdWrite> {
  const key = activityKey(activity.id);
  const json = encodeActivity(activity);
  for (let attempt = 0; attempt < 8; attempt++) {
    const { kvs } = await etcd.get(key).exec();
    const kv = kvs[0];
    if (kv) {
      const current = kv.value.toString();
      if (current === json) return "unchanged";
      if (storedRevision(current) > activity.revision) return "newer_in_etcd";
      const txn = await etcd
        .if(key, "Mod", "==", kv.mod_revision)
        .then(etcd.put(key).value(json))
        .commit();
      if (txn.succeeded) return "written";
    } else {
      const txn = await etcd.if(key, "Create", "==", 0).then(etcd.put(key).value(json)).commit();
      if (txn.succeeded) return "written";
    }
  }
  throw new Error(`etcd key ${key} kept changing during the write`);
}

/** The revision of an etcd value; -1 when it is not a readable activity (then it is replaced). */
export function storedRevision(json: string): bigint {
  try {
    return decodeActivity(json).revision;
  } catch {
    return -1n;
  }
}
