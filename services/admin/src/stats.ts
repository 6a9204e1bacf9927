/**
 * GetStats: stock counters from core (GetStock), order counts from order's
 * table (read-only), and the buy rate.
 *
 * Buy rate: successful reservations per second over the last few seconds,
 * from the length of the activity's order-intent stream (core's key, read
 * only): core appends one entry per successful reservation in the same script
 * that reserves, and nothing trims the stream, so XLEN is a monotonic
 * reservation counter that a release does not move back (reserved + paid
 * would). Samples live in memory; an activity asked about is sampled every
 * second in the background for two minutes, so a polling dashboard gets a
 * smooth rate without waiting; the first call samples twice, half a second
 * apart.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type GetStatsResponse,
  GetStatsResponseSchema,
} from "../../gen/seckill/admin/v1/admin_pb.ts";
import { ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import type { Redis } from "../../shared/src/stores/redis.ts";
import type { OrdersReport } from "./orders-report.ts";
import type { CoreClient } from "./publisher.ts";
import type { CatalogStore } from "./store.ts";
import { requireId } from "./validation.ts";
import { derivedStatus } from "./views.ts";

interface Sample {
  atMs: number;
  count: number;
}

export interface RateSamplerOptions {
  /** Rate over at most this much history. */
  windowMs?: number;
  /** A rate needs samples at least this far apart. */
  minSpanMs?: number;
  /** Background sampling period. */
  intervalMs?: number;
  /** How long after its last GetStats an activity keeps being sampled. */
  watchMs?: number;
  now?: () => number;
}

/** Reservations per second per activity, from sampled stream lengths. */
export class RateSampler {
  private readonly samples = new Map<string, Sample[]>();
  private readonly watched = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly o: Required<RateSamplerOptions>;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    options: RateSamplerOptions = {},
  ) {
    this.o = {
      windowMs: 5000,
      minSpanMs: 500,
      intervalMs: 1000,
      watchMs: 120_000,
      now: Date.now,
      ...options,
    };
  }

  start(): void {
    this.timer = setInterval(() => void this.sampleWatched(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Reservations per second over the last window; samples twice when there is no history. */
  async rate(activityId: string): Promise<number> {
    this.watched.set(activityId, this.o.now());
    await this.sample([activityId]);
    let list = this.samples.get(activityId) ?? [];
    if (list.length < 2 || list[list.length - 1]!.atMs - list[0]!.atMs < this.o.minSpanMs) {
      const waitMs = Math.max(0, this.o.minSpanMs - (this.o.now() - list[0]!.atMs));
      await sleep(waitMs);
      await this.sample([activityId]);
      list = this.samples.get(activityId) ?? [];
    }
    const first = list[0]!;
    const last = list[list.length - 1]!;
    const spanMs = last.atMs - first.atMs;
    return spanMs > 0 ? ((last.count - first.count) * 1000) / spanMs : 0;
  }

  private async sampleWatched(): Promise<void> {
    const now = this.o.now();
    for (const [id, at] of this.watched)
      if (now - at > this.o.watchMs) {
        this.watched.delete(id);
        this.samples.delete(id);
      }
    if (this.watched.size === 0) return;
    await this.sample([...this.watched.keys()]).catch((err: unknown) =>
      this.log.debug({ err: String(err) }, "buy-rate sampling failed"),
    );
  }

  private async sample(ids: string[]): Promise<void> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.xlen(activityKeys(id).orders);
    const replies = (await pipeline.exec()) ?? [];
    const now = this.o.now();
    ids.forEach((id, i) => {
      const [err, count] = replies[i] ?? [];
      if (err) throw err;
      const list = this.samples.get(id) ?? [];
      list.push({ atMs: now, count: Number(count ?? 0) });
      while (list.length > 2 && now - list[0]!.atMs > this.o.windowMs) list.shift();
      this.samples.set(id, list);
    });
  }
}

export interface StatsDeps {
  store: CatalogStore;
  orders: OrdersReport;
  core: CoreClient;
  rates: RateSampler;
  now?: () => number;
}

export async function activityStats(
  deps: StatsDeps,
  activityId: string,
): Promise<GetStatsResponse> {
  requireId("activity_id", activityId);
  const row = await deps.store.activity(activityId);
  if (!row)
    throw new ConnectError(`activity ${JSON.stringify(activityId)} not found`, Code.NotFound);
  const counts = await deps.orders.counts(activityId);
  const orders = counts
    ? counts.PENDING_PAYMENT.rows + counts.PAID.rows + counts.CANCELLED.rows
    : 0;
  const cancelled = counts?.CANCELLED.rows ?? 0;

  if (!row.published_at) {
    // A draft (or a draft ended without publishing): nothing in Redis yet.
    const nowMs = (deps.now ?? Date.now)();
    return create(GetStatsResponseSchema, {
      total: BigInt(row.total_stock),
      remaining: BigInt(row.total_stock),
      orders: BigInt(orders),
      cancelled: BigInt(cancelled),
      asOf: timestampFromMs(nowMs),
      status: row.status === "ENDED" ? ActivityStatus.ENDED : ActivityStatus.DRAFT,
    });
  }
  let stock: Awaited<ReturnType<CoreClient["getStock"]>>;
  try {
    stock = await deps.core.getStock({ activityId });
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.NotFound)
      throw new ConnectError(
        `activity ${activityId} is published but seckill-core has no stock for it (warm-up pending or Redis lost it)`,
        Code.FailedPrecondition,
      );
    throw err;
  }
  const rate = await deps.rates.rate(activityId);
  const nowMs = (deps.now ?? Date.now)();
  return create(GetStatsResponseSchema, {
    total: stock.total,
    remaining: stock.remaining,
    reserved: stock.reserved,
    paid: stock.paid,
    cancelled: BigInt(cancelled),
    orders: BigInt(orders),
    buyRatePerSecond: rate,
    soldOut: stock.remaining === 0n,
    asOf: timestampFromMs(nowMs),
    status: derivedStatus(row, nowMs, Number(stock.remaining)),
  });
}
