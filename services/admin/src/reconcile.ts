/**
 * Reconcile: per published (or ended) activity, reads core's Redis keys
 * READ-ONLY (layout in the data-plane contract, docs/data-plane.md; admin never writes
 * them), order's rows in MySQL (read-only) and the definition in etcd, and
 * hands the snapshot to reconcile-rules.ts.
 *
 * Read order, so that a live sale does not look inconsistent:
 *  1. the stream's consumer-group state (which intents order has acknowledged),
 *  2. the order rows (a row acknowledged in 1. is committed: order XACKs after COMMIT),
 *  3. one MULTI: stock counters, core's meta and the stream's head id,
 *  4. the intents up to that head and their reservation records, the users hash,
 *  5. etcd.
 * What still races (a payment or a cancellation between two reads) is filtered
 * by a second pass: a finding is reported only when a second snapshot, taken a
 * moment later, shows it again (same kind and key). On a quiet activity (after
 * the sale, or drained) the result is exact.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import {
  ORDER_CONSUMER_GROUP,
  ORDER_INTENT_FIELDS,
} from "../../shared/src/data-plane/order-intent.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import { activityKey, encodeActivity } from "../../shared/src/sale/activities.ts";
import type { Etcd3 } from "../../shared/src/stores/etcd.ts";
import type { Redis } from "../../shared/src/stores/redis.ts";
import { reconcileMismatches, reconcileRuns, reconcileSeconds } from "./metrics.ts";
import type { OrdersReport } from "./orders-report.ts";
import { storedRevision } from "./publisher.ts";
import {
  type ActivitySnapshot,
  type Counters,
  compareActivity,
  type Finding,
  type ReservationFacts,
  type StreamState,
} from "./reconcile-rules.ts";
import type { CatalogStore } from "./store.ts";
import { type ActivityRow, activityMessage } from "./views.ts";

export interface ReconcilerDeps {
  store: CatalogStore;
  orders: OrdersReport;
  /** core's Redis; only read. */
  coreRedis: Redis;
  etcd: Etcd3;
  log: Logger;
  graceMs: number;
  /** Pause before the confirming second pass. */
  recheckMs?: number;
  now?: () => number;
}

export interface ReconcileResult {
  mismatches: Finding[];
  checked: number;
}

const CHUNK = 500;

export class Reconciler {
  private readonly now: () => number;

  constructor(private readonly deps: ReconcilerDeps) {
    this.now = deps.now ?? Date.now;
  }

  async reconcile(activityId: string): Promise<ReconcileResult> {
    const { store } = this.deps;
    let rows: ActivityRow[];
    if (activityId) {
      const row = await store.activity(activityId);
      if (!row)
        throw new ConnectError(`activity ${JSON.stringify(activityId)} not found`, Code.NotFound);
      if (!row.published_at)
        throw new ConnectError(
          `activity ${activityId} was never published: nothing in Redis to reconcile`,
          Code.FailedPrecondition,
        );
      rows = [row];
    } else {
      rows = await store.publishedActivities();
    }
    const mismatches: Finding[] = [];
    for (const row of rows) mismatches.push(...(await this.check(row)));
    return { mismatches, checked: rows.length };
  }

  /** One activity: a pass, and a confirming pass when the first found anything. */
  async check(row: ActivityRow): Promise<Finding[]> {
    const end = reconcileSeconds.startTimer();
    try {
      let findings = await this.pass(row);
      if (findings.length > 0) {
        await sleep(this.deps.recheckMs ?? 300);
        const again = await this.pass((await this.deps.store.activity(row.id)) ?? row);
        const first = new Set(findings.map((f) => `${f.kind}|${f.key}`));
        findings = again.filter((f) => first.has(`${f.kind}|${f.key}`));
      }
      reconcileMismatches.set({ activity: row.id }, findings.length);
      reconcileRuns.inc({ outcome: findings.length === 0 ? "ok" : "mismatch" });
      if (findings.length > 0)
        this.deps.log.warn(
          { activityId: row.id, mismatches: findings.length, first: findings.slice(0, 20) },
          "reconcile found mismatches",
        );
      else this.deps.log.info({ activityId: row.id }, "reconcile: consistent");
      return findings;
    } catch (err) {
      reconcileRuns.inc({ outcome: "error" });
      throw err;
    } finally {
      end();
    }
  }

  private async pass(row: ActivityRow): Promise<Finding[]> {
    const snapshot = await this.snapshot(row);
    return compareActivity(snapshot, this.now(), this.deps.graceMs);
  }

  /** Reads everything one comparison needs, in the order the header explains. */
  async snapshot(row: ActivityRow): Promise<ActivitySnapshot> {
    const redis = this.deps.coreRedis;
    const k = activityKeys(row.id);
    const stream = await readStreamState(redis, k.orders);
    const orders = await this.deps.orders.facts(row.id);

    const replies = await redis
      .multi()
      .hget(k.meta, "total")
      .get(k.stock)
      .get(k.reserved)
      .get(k.paid)
      .xrevrange(k.orders, "+", "-", "COUNT", 1)
      .hgetall(k.meta)
      .exec();
    if (!replies) throw new Error("redis discarded the snapshot transaction");
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
    const [total, stock, reserved, paid, head, meta] = replies.map(([, v]) => v) as [
      string | null,
      string | null,
      string | null,
      string | null,
      [string, string[]][],
      Record<string, string>,
    ];
    const counters: Counters | undefined =
      total === null
        ? undefined
        : {
            total: Number(total),
            remaining: Number(stock ?? 0),
            reserved: Number(reserved ?? 0),
            paid: Number(paid ?? 0),
          };
    const headId = head[0]?.[0];
    const entries = headId ? await readEntries(redis, k.orders, headId) : [];
    const reservations = await readReservations(
      redis,
      entries.map((e) => e.orderId),
      (id) => k.reservation(id),
    );
    const users = await readUsers(redis, k.users);
    const etcdJson = (await this.deps.etcd.get(activityKey(row.id)).string()) ?? undefined;

    const activity = activityMessage(row);
    return {
      activityId: row.id,
      expected: {
        revision: row.revision,
        totalStock: row.total_stock,
        perUserLimit: row.per_user_limit,
        maxPerUserLimit: Math.max(row.max_per_user_limit, row.per_user_limit),
        startMs: row.start_at.getTime(),
        endMs: row.end_at.getTime(),
        status: row.status === "ENDED" ? "ENDED" : "PUBLISHED",
        paymentTimeoutSeconds: row.payment_timeout_seconds,
        json: encodeActivity(activity),
      },
      etcdJson,
      etcdRevision: etcdJson === undefined ? undefined : Number(storedRevision(etcdJson)),
      meta,
      counters,
      users,
      entries,
      reservations,
      stream,
      orders,
    };
  }
}

/** Order's consumer group's last-delivered id and pending (delivered, unacknowledged) entries. */
export async function readStreamState(redis: Redis, key: string): Promise<StreamState> {
  let groups: unknown[];
  try {
    groups = (await redis.xinfo("GROUPS", key)) as unknown[];
  } catch (err) {
    if (/no such key/i.test(String(err)))
      return { groupExists: false, lastDeliveredId: "0-0", pending: new Set() };
    throw err;
  }
  const group = groups
    .map((g) => pairs(g as unknown[]))
    .find((g) => g.name === ORDER_CONSUMER_GROUP);
  if (!group) return { groupExists: false, lastDeliveredId: "0-0", pending: new Set() };
  const pending = new Set<string>();
  if (Number(group.pending ?? 0) > 0) {
    let start = "-";
    for (;;) {
      const page = (await redis.xpending(key, ORDER_CONSUMER_GROUP, start, "+", 1000)) as [
        string,
        string,
        number,
        number,
      ][];
      for (const [id] of page) pending.add(id);
      if (page.length < 1000) break;
      start = `(${page[page.length - 1]![0]}`;
    }
  }
  return { groupExists: true, lastDeliveredId: String(group["last-delivered-id"]), pending };
}

function pairs(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

/** Order intents up to `headId` (inclusive): stream id and order id. */
async function readEntries(
  redis: Redis,
  key: string,
  headId: string,
): Promise<{ streamId: string; orderId: string }[]> {
  const out: { streamId: string; orderId: string }[] = [];
  let start = "-";
  for (;;) {
    const page = await redis.xrange(key, start, headId, "COUNT", 1000);
    for (const [streamId, fields] of page) {
      const at = fields.indexOf(ORDER_INTENT_FIELDS.orderId);
      out.push({ streamId, orderId: at >= 0 ? (fields[at + 1] ?? "") : "" });
    }
    if (page.length < 1000) return out;
    start = `(${page[page.length - 1]![0]}`;
  }
}

async function readReservations(
  redis: Redis,
  orderIds: readonly string[],
  keyOf: (id: string) => string,
): Promise<Map<string, ReservationFacts | undefined>> {
  const out = new Map<string, ReservationFacts | undefined>();
  for (let i = 0; i < orderIds.length; i += CHUNK) {
    const chunk = orderIds.slice(i, i + CHUNK);
    const pipeline = redis.pipeline();
    for (const id of chunk) pipeline.hmget(keyOf(id), "user", "qty", "status", "created_ms");
    const replies = (await pipeline.exec()) ?? [];
    chunk.forEach((id, j) => {
      const [err, value] = replies[j] ?? [new Error("no reply"), null];
      if (err) throw err;
      const [user, qty, status, created] = value as (string | null)[];
      out.set(
        id,
        status
          ? { user: user ?? "", qty: Number(qty), status, createdMs: Number(created ?? 0) }
          : undefined,
      );
    });
  }
  return out;
}

async function readUsers(redis: Redis, key: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cursor = "0";
  do {
    const [next, flat] = await redis.hscan(key, cursor, "COUNT", 1000);
    for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, Number(flat[i + 1]));
    cursor = next;
  } while (cursor !== "0");
  return out;
}
