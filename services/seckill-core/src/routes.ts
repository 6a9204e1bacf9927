/** SeckillCoreService: request checks and mapping between the proto and the stock store. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import {
  ReservationStatus,
  type ReserveOutcomeSchema,
  SeckillCoreService,
} from "../../gen/seckill/core/v1/core_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { Routes } from "../../shared/src/transport/grpc.ts";
import { DefinitionError, toDefinition } from "./activity.ts";
import {
  confirmations,
  releases,
  reservations,
  reserveBatchSize,
  soldOutShortCircuits,
} from "./metrics.ts";
import type { SoldOutFlags } from "./sold-out.ts";
import { isTransientRedisError, type ReserveResult, type StockStore } from "./store.ts";
import { idProblem, reserveBatchProblem } from "./validation.ts";
import { applyDefinition } from "./warm-up.ts";

export interface CoreDeps {
  store: StockStore;
  soldOut: SoldOutFlags;
  /** Most items per Reserve call. */
  maxBatch: number;
  log: Logger;
}

export function coreRoutes(deps: CoreDeps): Routes {
  return (router) => router.service(SeckillCoreService, coreImpl(deps));
}

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

function requireIds(fields: Record<string, string>): void {
  for (const [field, value] of Object.entries(fields)) {
    const problem = idProblem(field, value);
    if (problem) throw invalid(problem);
  }
}

/** Release reasons become a metric label: keep the known ones, fold the rest. */
const releaseReasons = new Set(["payment_timeout", "user_cancelled", "admin", "reconcile"]);

const resultMessages: Partial<Record<BuyResult, string>> = {
  [BuyResult.SOLD_OUT]: "sold out",
  [BuyResult.LIMIT_REACHED]: "this buyer already holds the per-user limit",
  [BuyResult.NOT_STARTED]: "the sale has not started",
  [BuyResult.ENDED]: "the sale has ended",
  [BuyResult.NOT_FOUND]: "no such activity (not warmed up)",
  [BuyResult.INVALID_QUANTITY]: "quantity must be between 1 and the per-user limit",
};

function toOutcome(r: ReserveResult): MessageInitShape<typeof ReserveOutcomeSchema> {
  const reserved = r.result === BuyResult.RESERVED;
  return {
    result: r.result,
    reservationId: r.orderId,
    orderId: r.orderId,
    paymentDeadline: reserved ? timestampFromMs(r.deadlineMs) : undefined,
    soldOut: r.soldOut,
    remaining: BigInt(r.remaining),
    replayed: r.replayed,
    message: reserved
      ? r.replayed
        ? "reserved (original answer of this request id)"
        : "reserved"
      : (resultMessages[r.result] ?? ""),
  };
}

const statusOf = {
  RESERVED: ReservationStatus.RESERVED,
  PAID: ReservationStatus.PAID,
  RELEASED: ReservationStatus.RELEASED,
} as const;

export function coreImpl(deps: CoreDeps): ServiceImpl<typeof SeckillCoreService> {
  const { store, soldOut, log } = deps;

  // During an outage every call fails: one warning per second says so, with the count.
  let lastWarnMs = 0;
  let suppressed = 0;

  /** Redis failures: UNAVAILABLE when worth retrying (down, restarting, timed out), else INTERNAL. */
  const redisFailure = (err: unknown, op: string): ConnectError => {
    if (err instanceof ConnectError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (isTransientRedisError(err)) {
      const now = Date.now();
      if (now - lastWarnMs >= 1000) {
        log.warn({ op, err: message, alsoFailedSinceLastWarning: suppressed }, "redis unavailable");
        lastWarnMs = now;
        suppressed = 0;
      } else suppressed++;
      return new ConnectError(`stock store unavailable: ${message}`, Code.Unavailable);
    }
    log.error({ op, err: message }, "redis script failed");
    return new ConnectError(`stock store failed: ${message}`, Code.Internal);
  };

  return {
    async reserve(req) {
      const problem = reserveBatchProblem(req.items, deps.maxBatch);
      if (problem) throw invalid(problem);
      reserveBatchSize.observe(req.items.length);
      let results: ReserveResult[];
      try {
        results = await store.reserveBatch(req.items, (id) => soldOut.has(id));
      } catch (err) {
        throw redisFailure(err, "reserve");
      }
      let reserved = 0;
      let cached = 0;
      results.forEach((r, i) => {
        if (r.soldOut && r.source === "script" && soldOut.mark(req.items[i]!.activityId))
          log.debug({ activityId: req.items[i]!.activityId }, "sold out: local flag set");
        if (r.source === "sold_out_cache") cached++;
        if (r.result === BuyResult.RESERVED && !r.replayed) reserved++;
        reservations.inc({ result: BuyResult[r.result], replayed: String(r.replayed) });
      });
      if (cached > 0) soldOutShortCircuits.inc(cached);
      trace.getActiveSpan()?.setAttributes({
        "seckill.batch_size": req.items.length,
        "seckill.reserved": reserved,
        "seckill.sold_out_short_circuits": cached,
      });
      return { outcomes: results.map(toOutcome) };
    },

    async release(req) {
      requireIds({ activity_id: req.activityId, reservation_id: req.reservationId });
      const reason = releaseReasons.has(req.reason) ? req.reason : "other";
      let result: Awaited<ReturnType<StockStore["release"]>>;
      try {
        result = await store.release(
          req.activityId,
          req.reservationId,
          req.reason.slice(0, 64) || "unspecified",
        );
      } catch (err) {
        throw redisFailure(err, "release");
      }
      const { outcome, remaining } = result;
      if (outcome === "not_warmed")
        throw new ConnectError(`activity ${req.activityId} is not warmed up`, Code.NotFound);
      releases.inc({ outcome, reason });
      if (outcome === "not_found")
        throw new ConnectError(
          `no reservation ${req.reservationId} in activity ${req.activityId}`,
          Code.NotFound,
        );
      if (outcome === "released")
        log.info(
          { activityId: req.activityId, reservationId: req.reservationId, reason, remaining },
          "reservation released",
        );
      trace.getActiveSpan()?.setAttribute("seckill.release_outcome", outcome);
      return { released: outcome === "released", remaining: BigInt(remaining) };
    },

    async confirmPayment(req) {
      requireIds({ activity_id: req.activityId, reservation_id: req.reservationId });
      let outcome: Awaited<ReturnType<StockStore["confirmPayment"]>>;
      try {
        outcome = await store.confirmPayment(req.activityId, req.reservationId);
      } catch (err) {
        throw redisFailure(err, "confirm_payment");
      }
      if (outcome === "not_warmed")
        throw new ConnectError(`activity ${req.activityId} is not warmed up`, Code.NotFound);
      confirmations.inc({ outcome });
      if (outcome === "not_found")
        throw new ConnectError(
          `no reservation ${req.reservationId} in activity ${req.activityId}`,
          Code.NotFound,
        );
      if (outcome === "released")
        log.warn(
          { activityId: req.activityId, reservationId: req.reservationId },
          "payment confirmed for a released reservation: refused",
        );
      trace.getActiveSpan()?.setAttribute("seckill.confirm_outcome", outcome);
      return { confirmed: outcome === "confirmed" || outcome === "already_paid" };
    },

    async getStock(req) {
      requireIds({ activity_id: req.activityId });
      let counters: Awaited<ReturnType<StockStore["getStock"]>>;
      try {
        counters = await store.getStock(req.activityId);
      } catch (err) {
        throw redisFailure(err, "get_stock");
      }
      if (!counters)
        throw new ConnectError(`activity ${req.activityId} is not warmed up`, Code.NotFound);
      return {
        total: BigInt(counters.total),
        remaining: BigInt(counters.remaining),
        reserved: BigInt(counters.reserved),
        paid: BigInt(counters.paid),
        soldOut: counters.remaining === 0,
      };
    },

    async getReservation(req) {
      requireIds({ activity_id: req.activityId });
      if (!req.reservationId && !req.orderId)
        throw invalid("reservation_id or order_id is required");
      if (req.reservationId && req.orderId && req.reservationId !== req.orderId)
        throw invalid("reservation_id and order_id name the same reservation: they must match");
      const id = req.reservationId || req.orderId;
      requireIds({ reservation_id: id });
      let record: Awaited<ReturnType<StockStore["getReservation"]>>;
      try {
        record = await store.getReservation(req.activityId, id);
      } catch (err) {
        throw redisFailure(err, "get_reservation");
      }
      if (!record)
        throw new ConnectError(`no reservation ${id} in activity ${req.activityId}`, Code.NotFound);
      return {
        reservation: {
          reservationId: record.orderId,
          orderId: record.orderId,
          activityId: record.activityId,
          userId: record.userId,
          quantity: record.quantity,
          status: statusOf[record.status] ?? ReservationStatus.UNSPECIFIED,
          paymentDeadline: timestampFromMs(record.deadlineMs),
          createdAt: timestampFromMs(record.createdMs),
          requestId: record.requestId,
        },
      };
    },

    async warmUp(req) {
      let def: ReturnType<typeof toDefinition>;
      try {
        def = toDefinition(req.activity);
      } catch (err) {
        if (err instanceof DefinitionError)
          throw new ConnectError(
            err.message,
            err.precondition ? Code.FailedPrecondition : Code.InvalidArgument,
          );
        throw err;
      }
      requireIds({ "activity.id": def.id });
      try {
        const result = await applyDefinition(store, def, "rpc", log);
        return { remaining: BigInt(result.remaining), alreadyWarm: result.alreadyWarm };
      } catch (err) {
        throw redisFailure(err, "warm_up");
      }
    },
  };
}
