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
import { idProblem, orderIdProblem } from "../../shared/src/data-plane/ids.ts";
import { redisErrorMapper, withRedisErrors } from "../../shared/src/data-plane/redis-errors.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import type { Routes } from "../../shared/src/transport/grpc-server.ts";
import { DefinitionError, toDefinition } from "./activity.ts";
import {
  confirmations,
  releases,
  reservations,
  reserveBatchSize,
  soldOutShortCircuits,
} from "./metrics.ts";
import type { ReserveResult, StockStore } from "./store.ts";
import { reserveBatchProblem } from "./validation.ts";
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

/** Reservation ids are order ids (ULIDs core made). */
function requireOrderId(field: string, value: string): void {
  const problem = orderIdProblem(field, value);
  if (problem) throw invalid(problem);
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

  /** Redis failures: UNAVAILABLE when worth retrying (down, restarting, timed out), else INTERNAL. */
  const redisFailure = redisErrorMapper({ store: "stock store", log });

  return {
    async reserve(req) {
      const problem = reserveBatchProblem(req.items, deps.maxBatch);
      if (problem) throw invalid(problem);
      reserveBatchSize.observe(req.items.length);
      const results = await withRedisErrors(redisFailure, "reserve", () =>
        store.reserveBatch(req.items, (id) => soldOut.has(id)),
      );
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
      requireIds({ activity_id: req.activityId });
      requireOrderId("reservation_id", req.reservationId);
      const reason = releaseReasons.has(req.reason) ? req.reason : "other";
      const { outcome, remaining } = await withRedisErrors(redisFailure, "release", () =>
        store.release(req.activityId, req.reservationId, req.reason.slice(0, 64) || "unspecified"),
      );
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
      requireIds({ activity_id: req.activityId });
      requireOrderId("reservation_id", req.reservationId);
      const outcome = await withRedisErrors(redisFailure, "confirm_payment", () =>
        store.confirmPayment(req.activityId, req.reservationId),
      );
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
      const counters = await withRedisErrors(redisFailure, "get_stock", () =>
        store.getStock(req.activityId),
      );
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
      requireOrderId(req.reservationId ? "reservation_id" : "order_id", id);
      const record = await withRedisErrors(redisFailure, "get_reservation", () =>
        store.getReservation(req.activityId, id),
      );
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
      const result = await withRedisErrors(redisFailure, "warm_up", () =>
        applyDefinition(store, def, "rpc", log),
      );
      return { remaining: BigInt(result.remaining), alreadyWarm: result.alreadyWarm };
    },
  };
}
