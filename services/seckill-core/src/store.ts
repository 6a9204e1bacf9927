/**
 * The stock in Redis: the scripts of scripts.ts behind typed methods. One
 * Reserve batch is one pipeline (one round trip for N items); every other
 * operation is one script call. No gRPC types here: routes.ts maps them.
 */
import type { ChainableCommander, Redis } from "ioredis";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { newId } from "../../shared/src/data-plane/ids.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import type { ActivityDefinition } from "./activity.ts";
import { redisSeconds } from "./metrics.ts";
import {
  CONFIRM_PAYMENT_LUA,
  GET_STOCK_LUA,
  RELEASE_LUA,
  RESERVE_LUA,
  WARM_UP_LUA,
} from "./scripts.ts";

export interface ReserveInput {
  activityId: string;
  userId: string;
  quantity: number;
  requestId: string;
}

export interface ReserveResult {
  result: BuyResult;
  /** The order id (== reservation id) when RESERVED, else "". */
  orderId: string;
  /** Payment deadline, epoch ms, when RESERVED, else 0. */
  deadlineMs: number;
  /** Stock right after the item ran (0 when unknown: not warmed, or answered without Redis). */
  remaining: number;
  /** The request id had reserved before: this is its original answer, nothing changed. */
  replayed: boolean;
  /** No stock is left: callers may refuse later buyers of this activity without asking. */
  soldOut: boolean;
  /** script: the reservation script ran; input: refused without Redis; sold_out_cache: the local flag answered. */
  source: "script" | "input" | "sold_out_cache";
}

export type ReleaseOutcome = "released" | "paid" | "already_released" | "not_found";
export type ConfirmOutcome = "confirmed" | "already_paid" | "released" | "not_found";

export interface WarmUpResult {
  /** The activity's stock was in Redis before the call. */
  alreadyWarm: boolean;
  /** The definition was written (false: stored revision was newer, or not warm and create off). */
  applied: boolean;
  remaining: number;
  /** The stored revision after the call (-1 when not warm). */
  revision: number;
  /** The stored total (never changed after the first warm-up). */
  total: number;
}

export interface StockCounters {
  total: number;
  remaining: number;
  reserved: number;
  paid: number;
}

export type ReservationStatusName = "RESERVED" | "PAID" | "RELEASED";

export interface ReservationRecord {
  orderId: string;
  activityId: string;
  userId: string;
  quantity: number;
  status: ReservationStatusName;
  deadlineMs: number;
  createdMs: number;
  requestId: string;
}

type Arg = string | number;
type ScriptReply = (string | number)[];

/** The commands defineCommand adds, as ioredis exposes them on the client and on pipelines. */
interface ScriptCommands<R> {
  seckillReserve(...args: Arg[]): R;
  seckillRelease(...args: Arg[]): R;
  seckillConfirmPayment(...args: Arg[]): R;
  seckillWarmUp(...args: Arg[]): R;
  seckillGetStock(...args: Arg[]): R;
}
type ScriptClient = Redis & ScriptCommands<Promise<ScriptReply>>;
type ScriptPipeline = ChainableCommander & ScriptCommands<ScriptPipeline>;

const knownResults = new Set<number>([
  BuyResult.RESERVED,
  BuyResult.SOLD_OUT,
  BuyResult.LIMIT_REACHED,
  BuyResult.NOT_STARTED,
  BuyResult.ENDED,
  BuyResult.NOT_FOUND,
  BuyResult.INVALID_QUANTITY,
]);

/** Parses a request id's remembered answer, "R|<order_id>|<deadline_ms>". */
export function parseRemembered(value: string | null): { orderId: string; deadlineMs: number } {
  const match = value === null ? null : /^R\|([^|]+)\|(\d+)$/.exec(value);
  return match
    ? { orderId: match[1]!, deadlineMs: Number(match[2]) }
    : { orderId: "", deadlineMs: 0 };
}

export class StockStore {
  private readonly redis: ScriptClient;

  constructor(redis: Redis) {
    redis.defineCommand("seckillReserve", { numberOfKeys: 7, lua: RESERVE_LUA });
    redis.defineCommand("seckillRelease", { numberOfKeys: 5, lua: RELEASE_LUA });
    redis.defineCommand("seckillConfirmPayment", { numberOfKeys: 4, lua: CONFIRM_PAYMENT_LUA });
    redis.defineCommand("seckillWarmUp", { numberOfKeys: 5, lua: WARM_UP_LUA });
    redis.defineCommand("seckillGetStock", { numberOfKeys: 4, lua: GET_STOCK_LUA, readOnly: true });
    this.redis = redis as ScriptClient;
  }

  /**
   * Runs a batch of buy requests in one pipeline and answers each, in order.
   * Items with quantity < 1 are refused without Redis. Items of an activity
   * `isSoldOut` says is sold out skip the script: one HMGET per activity looks
   * their request ids up, so a retried request that had reserved still gets its
   * original answer (I4), and the others get SOLD_OUT.
   * Throws if any command of the pipeline failed (the caller may retry the whole
   * batch: every item is idempotent by request id).
   */
  async reserveBatch(
    items: readonly ReserveInput[],
    isSoldOut: (activityId: string) => boolean = () => false,
  ): Promise<ReserveResult[]> {
    const results: ReserveResult[] = new Array(items.length);
    const pipeline = this.redis.pipeline() as ScriptPipeline;
    const scripted: number[] = [];
    const cached = new Map<string, number[]>();
    items.forEach((item, i) => {
      if (!Number.isInteger(item.quantity) || item.quantity < 1) {
        results[i] = refusal(BuyResult.INVALID_QUANTITY, 0, "input");
      } else if (isSoldOut(item.activityId)) {
        const list = cached.get(item.activityId);
        if (list) list.push(i);
        else cached.set(item.activityId, [i]);
      } else {
        const k = activityKeys(item.activityId);
        const orderId = newId();
        pipeline.seckillReserve(
          k.meta,
          k.stock,
          k.reserved,
          k.users,
          k.req,
          k.orders,
          k.reservation(orderId),
          item.activityId,
          item.userId,
          item.quantity,
          item.requestId,
          orderId,
        );
        scripted.push(i);
      }
    });
    const lookups = [...cached];
    for (const [activityId, indexes] of lookups) {
      pipeline.hmget(activityKeys(activityId).req, ...indexes.map((i) => items[i]!.requestId));
    }
    if (scripted.length === 0 && lookups.length === 0) return results;

    const replies = await this.timed("reserve_batch", () => pipeline.exec());
    if (!replies) throw new Error("redis pipeline was discarded");
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];

    scripted.forEach((itemIndex, n) => {
      results[itemIndex] = fromScriptReply(replies[n]![1] as ScriptReply);
    });
    lookups.forEach(([, indexes], n) => {
      const remembered = replies[scripted.length + n]![1] as (string | null)[];
      indexes.forEach((itemIndex, j) => {
        const { orderId, deadlineMs } = parseRemembered(remembered[j] ?? null);
        results[itemIndex] = orderId
          ? {
              result: BuyResult.RESERVED,
              orderId,
              deadlineMs,
              remaining: 0,
              replayed: true,
              soldOut: true,
              source: "sold_out_cache",
            }
          : refusal(BuyResult.SOLD_OUT, 0, "sold_out_cache");
      });
    });
    return results;
  }

  async release(activityId: string, reservationId: string, reason: string) {
    const k = activityKeys(activityId);
    const [code, remaining, status] = await this.timed("release", () =>
      this.redis.seckillRelease(
        k.meta,
        k.stock,
        k.reserved,
        k.users,
        k.reservation(reservationId),
        k.restock,
        reason,
      ),
    );
    const outcome: ReleaseOutcome | "not_warmed" =
      code === 1
        ? "released"
        : code === 0
          ? status === "PAID"
            ? "paid"
            : "already_released"
          : code === -1
            ? "not_found"
            : "not_warmed";
    return { outcome, remaining: Number(remaining) };
  }

  async confirmPayment(
    activityId: string,
    reservationId: string,
  ): Promise<ConfirmOutcome | "not_warmed"> {
    const k = activityKeys(activityId);
    const [code] = await this.timed("confirm_payment", () =>
      this.redis.seckillConfirmPayment(k.meta, k.reserved, k.paid, k.reservation(reservationId)),
    );
    switch (code) {
      case 1:
        return "confirmed";
      case 2:
        return "already_paid";
      case 0:
        return "released";
      case -1:
        return "not_found";
      default:
        return "not_warmed";
    }
  }

  /**
   * Writes an activity's definition. With `create`, the first call creates the
   * stock (remaining = total); without it, only an activity already warm is
   * updated, so a lost Redis dataset is never silently refilled.
   */
  async warmUp(def: ActivityDefinition, opts: { create: boolean }): Promise<WarmUpResult> {
    const k = activityKeys(def.id);
    const [alreadyWarm, remaining, applied, revision, total] = await this.timed("warm_up", () =>
      this.redis.seckillWarmUp(
        k.meta,
        k.stock,
        k.reserved,
        k.paid,
        k.orders,
        def.totalStock,
        def.startMs,
        def.endMs,
        def.perUserLimit,
        def.paymentTimeoutSeconds,
        def.revision,
        def.priceCents,
        def.currency,
        def.productId,
        def.status,
        opts.create ? "1" : "0",
      ),
    );
    return {
      alreadyWarm: alreadyWarm === 1,
      applied: applied === 1,
      remaining: Number(remaining),
      revision: Number(revision),
      total: Number(total),
    };
  }

  /** The counters in one snapshot, or undefined when the activity is not warmed. */
  async getStock(activityId: string): Promise<StockCounters | undefined> {
    const k = activityKeys(activityId);
    const [found, total, remaining, reserved, paid] = await this.timed("get_stock", () =>
      this.redis.seckillGetStock(k.meta, k.stock, k.reserved, k.paid),
    );
    if (found !== 1) return undefined;
    return {
      total: Number(total),
      remaining: Number(remaining),
      reserved: Number(reserved),
      paid: Number(paid),
    };
  }

  async getReservation(
    activityId: string,
    reservationId: string,
  ): Promise<ReservationRecord | undefined> {
    const hash = await this.timed("get_reservation", () =>
      this.redis.hgetall(activityKeys(activityId).reservation(reservationId)),
    );
    if (!hash.status) return undefined;
    return {
      orderId: reservationId,
      activityId,
      userId: hash.user ?? "",
      quantity: Number(hash.qty),
      status: hash.status as ReservationStatusName,
      deadlineMs: Number(hash.deadline_ms),
      createdMs: Number(hash.created_ms),
      requestId: hash.request_id ?? "",
    };
  }

  private async timed<T>(op: string, run: () => Promise<T>): Promise<T> {
    const end = redisSeconds.startTimer({ op });
    try {
      const value = await run();
      end({ outcome: "ok" });
      return value;
    } catch (err) {
      end({ outcome: "error" });
      throw err;
    }
  }
}

function refusal(result: BuyResult, remaining: number, source: ReserveResult["source"]) {
  return {
    result,
    orderId: "",
    deadlineMs: 0,
    remaining,
    replayed: false,
    soldOut: result === BuyResult.SOLD_OUT && remaining === 0,
    source,
  } satisfies ReserveResult;
}

function fromScriptReply(reply: ScriptReply): ReserveResult {
  const [code, orderId, deadlineMs, remaining, replayed] = reply;
  const result = Number(code);
  if (!knownResults.has(result)) throw new Error(`reservation script answered code ${code}`);
  const left = Number(remaining);
  return {
    result,
    orderId: String(orderId),
    deadlineMs: Number(deadlineMs),
    remaining: left,
    replayed: replayed === 1,
    soldOut: result !== BuyResult.NOT_FOUND && left === 0,
    source: "script",
  };
}
