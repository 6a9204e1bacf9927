/**
 * Telling seckill-core about a final order: ConfirmPayment after PAID, Release
 * after CANCELLED. Only the instance whose conditional update won calls it
 * first; when that call fails (or the instance dies), the settle sweeper calls
 * again later. Core is idempotent by reservation id, so at-least-once calls
 * give exactly-once effects: the stock of a cancelled order goes back once.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { ReservationStatus, type SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { type OrderRow, Settled } from "./db.ts";
import { settlements } from "./metrics.ts";
import { releaseReason } from "./state.ts";
import type { OrderStore } from "./store.ts";

export type CoreClient = Client<typeof SeckillCoreService>;
export type SettleResult = "settled" | "retry" | "conflict";

export class StockSettler {
  constructor(
    private readonly core: CoreClient,
    private readonly store: OrderStore,
    private readonly log: Logger,
  ) {}

  /** Tells core; marks stock_settled. Never throws: "retry" leaves the order to the sweeper. */
  async settle(
    order: Pick<OrderRow, "id" | "activity_id" | "status" | "cancel_reason">,
  ): Promise<SettleResult> {
    const kind = order.status === "PAID" ? "confirm" : "release";
    if (order.status === "PENDING_PAYMENT") return "retry";
    let result: SettleResult;
    try {
      result = kind === "confirm" ? await this.confirm(order) : await this.release(order);
    } catch (err) {
      const code = err instanceof ConnectError ? err.code : Code.Unknown;
      if (code === Code.NotFound) {
        result = "conflict";
        this.log.error(
          { orderId: order.id, activityId: order.activity_id, kind, err: String(err) },
          "core does not know this reservation; the order needs reconciliation",
        );
      } else {
        settlements.inc({ kind, result: "retry" });
        this.log.warn(
          { orderId: order.id, kind, err: String(err) },
          "telling core failed; the settle sweeper retries",
        );
        return "retry";
      }
    }
    try {
      await this.store.markSettled(order.id, result === "settled" ? Settled.YES : Settled.CONFLICT);
    } catch (err) {
      // Core was told; the sweeper will tell it again (idempotent) and mark it then.
      this.log.warn({ orderId: order.id, err: String(err) }, "marking stock_settled failed");
      return "retry";
    }
    settlements.inc({ kind, result });
    return result;
  }

  private async confirm(order: Pick<OrderRow, "id" | "activity_id">): Promise<SettleResult> {
    const res = await this.core.confirmPayment({
      activityId: order.activity_id,
      reservationId: order.id,
    });
    if (res.confirmed) return "settled";
    this.log.error(
      { orderId: order.id, activityId: order.activity_id },
      "order is PAID but core had released its reservation; the order needs reconciliation",
    );
    return "conflict";
  }

  private async release(
    order: Pick<OrderRow, "id" | "activity_id" | "cancel_reason">,
  ): Promise<SettleResult> {
    const res = await this.core.release({
      activityId: order.activity_id,
      reservationId: order.id,
      reason: releaseReason(order.cancel_reason),
    });
    if (res.released) return "settled";
    // Released before (a retry) is fine; paid in core while cancelled here is not.
    const { reservation } = await this.core.getReservation({
      activityId: order.activity_id,
      reservationId: order.id,
    });
    if (reservation?.status === ReservationStatus.RELEASED) return "settled";
    this.log.error(
      { orderId: order.id, activityId: order.activity_id, coreStatus: reservation?.status },
      "order is CANCELLED but core's reservation is not released; the order needs reconciliation",
    );
    return "conflict";
  }
}
