/** Rows and reservations as API messages, and the opaque page token of ListMyOrders (pure). */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Activity } from "../../gen/seckill/common/v1/common_pb.ts";
import { OrderStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Reservation } from "../../gen/seckill/core/v1/core_pb.ts";
import { type Order, OrderSchema } from "../../gen/seckill/order/v1/order_pb.ts";
import type { OrderRow, OrderStatusName } from "./db.ts";
import type { PageCursor } from "./store.ts";

const statusOf: Record<OrderStatusName, OrderStatus> = {
  PENDING_PAYMENT: OrderStatus.PENDING_PAYMENT,
  PAID: OrderStatus.PAID,
  CANCELLED: OrderStatus.CANCELLED,
};

export function isFinal(status: OrderStatus): boolean {
  return status === OrderStatus.PAID || status === OrderStatus.CANCELLED;
}

const ts = (d: Date | null) => (d ? timestampFromMs(d.getTime()) : undefined);

export function orderFromRow(row: OrderRow): Order {
  return create(OrderSchema, {
    id: row.id,
    reservationId: row.id,
    activityId: row.activity_id,
    productId: row.product_id,
    userId: row.user_id,
    quantity: row.quantity,
    unitPriceCents: BigInt(row.unit_price_cents),
    amountCents: BigInt(row.amount_cents),
    currency: row.currency,
    status: statusOf[row.status],
    createdAt: ts(row.created_at),
    paymentDeadline: ts(row.payment_deadline),
    paidAt: ts(row.paid_at),
    cancelledAt: ts(row.cancelled_at),
    cancelReason: row.cancel_reason ?? "",
    paymentId: row.payment_id ?? "",
  });
}

/** The order a reservation will become, status CREATING; prices from the activity when known. */
export function orderFromReservation(res: Reservation, activity: Activity | undefined): Order {
  const unit = activity?.priceCents ?? 0n;
  return create(OrderSchema, {
    id: res.orderId || res.reservationId,
    reservationId: res.reservationId,
    activityId: res.activityId,
    productId: activity?.productId ?? "",
    userId: res.userId,
    quantity: res.quantity,
    unitPriceCents: unit,
    amountCents: unit * BigInt(res.quantity),
    currency: activity?.currency ?? "",
    status: OrderStatus.CREATING,
    createdAt: res.createdAt,
    paymentDeadline: res.paymentDeadline,
  });
}

// ---------------------------------------------------------------------------
// Page tokens: opaque to clients, a keyset position plus the filter it belongs to.

interface TokenBody {
  v: 1;
  c: number;
  i: string;
  a: string;
}

export function encodePageToken(last: Order, activityFilter: string): string {
  const body: TokenBody = {
    v: 1,
    c: last.createdAt ? timestampMs(last.createdAt) : 0,
    i: last.id,
    a: activityFilter,
  };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/** The position a token stands for; undefined for "", an Error message for a bad token. */
export function decodePageToken(
  token: string,
  activityFilter: string,
): PageCursor | undefined | { error: string } {
  if (token === "") return undefined;
  let body: Partial<TokenBody>;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Partial<TokenBody>;
  } catch {
    return { error: "page_token is not a token this server issued" };
  }
  if (
    body?.v !== 1 ||
    typeof body.c !== "number" ||
    !Number.isSafeInteger(body.c) ||
    typeof body.i !== "string" ||
    typeof body.a !== "string"
  )
    return { error: "page_token is not a token this server issued" };
  if (body.a !== activityFilter)
    return { error: "page_token belongs to a listing with another activity_id" };
  return { createdMs: body.c, id: body.i };
}
