/**
 * The order operations behind the RPCs: reading (with the CREATING answer
 * from core's reservation before the row exists), paying, cancelling and
 * watching. Access: a buyer sees and acts on their own orders only; another
 * user's order is NOT_FOUND (existence is not revealed); admins see all.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Activity } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Reservation } from "../../gen/seckill/core/v1/core_pb.ts";
import type { Order } from "../../gen/seckill/order/v1/order_pb.ts";
import { idProblem, MAX_ID_LENGTH, orderIdProblem } from "../../shared/src/data-plane/ids.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { Caller } from "../../shared/src/transport/identity.ts";
import type { OrderRow } from "./db.ts";
import type { OrderEvents } from "./events.ts";
import { refusals, stateChanges } from "./metrics.ts";
import type { CoreClient, StockSettler } from "./settlement.ts";
import {
  CancelReason,
  cancelReasonOf,
  type Decision,
  decideCancel,
  decidePay,
  explainLostPay,
  MAX_CANCEL_REASON,
} from "./state.ts";
import { type OrderStore, PaymentIdInUse } from "./store.ts";
import {
  decodePageToken,
  encodePageToken,
  isFinal,
  orderFromReservation,
  orderFromRow,
} from "./views.ts";

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;
/** Without an activity hint, a missing row is looked up in at most this many activities. */
const MAX_ACTIVITY_SCAN = 32;

export interface ActivityLookup {
  get(id: string): Activity | undefined;
  list(): Activity[];
}

export interface OrdersDeps {
  store: OrderStore;
  settler: StockSettler;
  events: OrderEvents;
  core: CoreClient;
  activities: ActivityLookup;
  log: Logger;
}

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);
const notFound = (orderId: string) => new ConnectError(`order ${orderId} not found`, Code.NotFound);
const precondition = (message: string) => new ConnectError(message, Code.FailedPrecondition);

export function checkOrderId(orderId: string): void {
  const problem = orderIdProblem("order_id", orderId);
  if (problem) throw invalid(problem);
}

/** An optional activity id: empty, or an id. */
function checkActivityHint(activityId: string): void {
  const problem = activityId === "" ? undefined : idProblem("activity_id", activityId);
  if (problem) throw invalid(problem);
}

const visibleTo = (userId: string, caller: Caller) =>
  caller.role === "admin" || userId === caller.userId;

export class Orders {
  constructor(private readonly deps: OrdersDeps) {}

  /** The order as the caller may see it: the row, else the reservation (CREATING), else NOT_FOUND. */
  async get(orderId: string, caller: Caller, activityHint = ""): Promise<Order> {
    checkOrderId(orderId);
    checkActivityHint(activityHint);
    const row = await this.deps.store.get(orderId);
    if (row) {
      if (!visibleTo(row.user_id, caller)) throw notFound(orderId);
      return orderFromRow(row);
    }
    const reservation = await this.reservation(orderId, activityHint);
    if (!reservation || !visibleTo(reservation.userId, caller)) throw notFound(orderId);
    // The row may have landed while core answered.
    const landed = await this.deps.store.get(orderId);
    if (landed) return orderFromRow(landed);
    return orderFromReservation(reservation, this.deps.activities.get(reservation.activityId));
  }

  async list(
    caller: Caller,
    req: { pageSize: number; pageToken: string; activityId: string },
  ): Promise<{ orders: Order[]; nextPageToken: string }> {
    if (req.pageSize < 0) throw invalid("page_size must not be negative");
    checkActivityHint(req.activityId);
    // Above the maximum is coerced to it (AIP-158), not refused.
    const size = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    const after = decodePageToken(req.pageToken, req.activityId);
    if (after && "error" in after) throw invalid(after.error);
    const rows = await this.deps.store.listByUser(caller.userId, {
      activityId: req.activityId || undefined,
      after,
      limit: size + 1,
    });
    const orders = rows.slice(0, size).map(orderFromRow);
    const last = orders[orders.length - 1];
    return {
      orders,
      nextPageToken: rows.length > size && last ? encodePageToken(last, req.activityId) : "",
    };
  }

  async pay(orderId: string, paymentId: string, caller: Caller): Promise<Order> {
    checkOrderId(orderId);
    if (paymentId === "") throw invalid("payment_id is required");
    // Not one of ours (the provider's reference), but it fits the same column width as an id.
    if (paymentId.length > MAX_ID_LENGTH)
      throw invalid(`payment_id must be at most ${MAX_ID_LENGTH} characters`);
    const span = trace.getActiveSpan();
    span?.setAttribute("seckill.order_id", orderId);
    const row = await this.ownedRow(orderId, caller, "pay");
    let current = row;
    let decision: Decision = decidePay(row, paymentId);
    if (decision.kind === "attempt") {
      let won: boolean;
      try {
        won = await this.deps.store.tryPay(orderId, paymentId);
      } catch (err) {
        if (err instanceof PaymentIdInUse) {
          refusals.inc({ op: "pay", reason: "payment_id_in_use" });
          throw precondition(err.message);
        }
        throw err;
      }
      span?.setAttribute("seckill.pay.won", won);
      current = await this.mustGet(orderId);
      if (won) {
        stateChanges.inc({ status: "PAID", cause: "pay" });
        this.deps.log.info({ orderId, paymentId }, "order paid");
        this.deps.events.publish(orderId, "PAID");
        await this.deps.settler.settle(current);
        return orderFromRow(current);
      }
      decision = explainLostPay(current, paymentId);
      // Still pending: the deadline passed and no sweeper got to it yet; cancel it now.
      if (current.status === "PENDING_PAYMENT") await this.expire(orderId);
    }
    if (decision.kind === "done") return orderFromRow(current);
    if (decision.kind === "refuse") {
      refusals.inc({ op: "pay", reason: current.status.toLowerCase() });
      throw precondition(decision.message);
    }
    throw new ConnectError("unexpected state machine decision", Code.Internal);
  }

  async cancel(orderId: string, reasonText: string, caller: Caller): Promise<Order> {
    checkOrderId(orderId);
    if (reasonText.length > MAX_CANCEL_REASON)
      throw invalid(`reason must be at most ${MAX_CANCEL_REASON} characters`);
    trace.getActiveSpan()?.setAttribute("seckill.order_id", orderId);
    const row = await this.ownedRow(orderId, caller, "cancel");
    const byAdmin = caller.role === "admin" && row.user_id !== caller.userId;
    const reason = cancelReasonOf(reasonText, byAdmin);
    let current = row;
    let decision = decideCancel(row);
    if (decision.kind === "attempt") {
      const won = await this.deps.store.tryCancel(orderId, reason);
      current = await this.mustGet(orderId);
      if (won) {
        stateChanges.inc({ status: "CANCELLED", cause: byAdmin ? "admin" : "user" });
        this.deps.log.info({ orderId, reason }, "order cancelled");
        this.deps.events.publish(orderId, "CANCELLED");
        await this.deps.settler.settle(current);
        return orderFromRow(current);
      }
      decision = decideCancel(current);
    }
    if (decision.kind === "done") return orderFromRow(current);
    if (decision.kind === "refuse") {
      refusals.inc({ op: "cancel", reason: current.status.toLowerCase() });
      throw precondition(decision.message);
    }
    throw new ConnectError("order changed during cancel; retry", Code.Aborted);
  }

  /**
   * The order's states for WatchOrder: the current one at once, then every
   * change (woken by pub/sub, or the re-read every `pollMs`), until a final
   * state or `signal` (client gone, deadline, shutdown).
   */
  async *watch(
    orderId: string,
    caller: Caller,
    activityHint: string,
    signal: AbortSignal,
    pollMs: number,
  ): AsyncGenerator<Order> {
    checkOrderId(orderId);
    let changed = false;
    let wake = () => {};
    // Subscribe before the first read, so a change right after it is not missed.
    const unlisten = await this.deps.events.listen(orderId, () => {
      changed = true;
      wake();
    });
    try {
      let current = await this.get(orderId, caller, activityHint);
      yield current;
      while (!isFinal(current.status)) {
        await new Promise<void>((resolve) => {
          if (changed || signal.aborted) return resolve();
          const timer = setTimeout(done, pollMs);
          signal.addEventListener("abort", done, { once: true });
          wake = done;
          function done() {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            wake = () => {};
            resolve();
          }
        });
        if (signal.aborted) break;
        changed = false;
        let next: Order;
        try {
          next = await this.get(orderId, caller, activityHint);
        } catch (err) {
          this.deps.log.warn({ orderId, err: String(err) }, "watch: re-reading the order failed");
          continue;
        }
        if (next.status !== current.status) {
          current = next;
          yield current;
        }
      }
      if (!isFinal(current.status)) {
        const reason: unknown = signal.reason;
        throw reason instanceof ConnectError
          ? reason
          : new ConnectError("server is shutting down; watch again", Code.Unavailable);
      }
    } finally {
      await unlisten();
    }
  }

  /** Cancels an order whose deadline passed, if nobody else did; the winner returns the stock. */
  private async expire(orderId: string): Promise<void> {
    const won = await this.deps.store.tryExpire(orderId);
    if (!won) return;
    stateChanges.inc({ status: "CANCELLED", cause: CancelReason.TIMEOUT });
    const row = await this.mustGet(orderId);
    this.deps.events.publish(orderId, "CANCELLED");
    await this.deps.settler.settle(row);
  }

  /** The row if the caller may act on it; FAILED_PRECONDITION while it is still being created. */
  private async ownedRow(orderId: string, caller: Caller, op: string): Promise<OrderRow> {
    const row = await this.deps.store.get(orderId);
    if (row) {
      if (!visibleTo(row.user_id, caller)) throw notFound(orderId);
      return row;
    }
    const reservation = await this.reservation(orderId, "").catch(() => undefined);
    if (reservation && visibleTo(reservation.userId, caller)) {
      refusals.inc({ op, reason: "creating" });
      throw precondition(
        `order ${orderId} is still being created (CREATING); ${op} again once it is PENDING_PAYMENT (WatchOrder tells when)`,
      );
    }
    throw notFound(orderId);
  }

  private async mustGet(orderId: string): Promise<OrderRow> {
    const row = await this.deps.store.get(orderId);
    if (!row) throw new ConnectError(`order ${orderId} vanished`, Code.Internal);
    return row;
  }

  /**
   * Core's reservation of an order without a row yet: in the hinted activity,
   * or else in each activity this instance knows (a handful during a sale).
   */
  private async reservation(
    orderId: string,
    activityHint: string,
  ): Promise<Reservation | undefined> {
    const ask = async (activityId: string) => {
      try {
        const { reservation } = await this.deps.core.getReservation({ activityId, orderId });
        return reservation;
      } catch (err) {
        if (err instanceof ConnectError && err.code === Code.NotFound) return undefined;
        throw err;
      }
    };
    if (activityHint !== "") {
      try {
        return await ask(activityHint);
      } catch (err) {
        throw new ConnectError(
          `order ${orderId} has no row yet and seckill-core could not be asked: ${String(err)}`,
          Code.Unavailable,
        );
      }
    }
    const candidates = this.deps.activities.list().slice(0, MAX_ACTIVITY_SCAN);
    const found = await Promise.all(candidates.map((a) => ask(a.id).catch(() => undefined)));
    return found.find((r) => r !== undefined);
  }
}
