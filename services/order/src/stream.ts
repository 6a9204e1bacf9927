/**
 * What order makes of an order intent (the entry format, its decoding and the
 * stream, group and dead-letter names are the data-plane contract's: shared
 * data-plane/order-intent.ts): the row it becomes.
 */
import type { OrderIntent } from "../../shared/src/data-plane/order-intent.ts";
import type { NewOrderRow } from "./db.ts";

/** The row an intent becomes: PENDING_PAYMENT until paid or cancelled. */
export function intentRow(intent: OrderIntent): NewOrderRow {
  return {
    id: intent.orderId,
    activity_id: intent.activityId,
    product_id: intent.productId,
    user_id: intent.userId,
    quantity: intent.quantity,
    unit_price_cents: intent.unitPriceCents,
    amount_cents: intent.quantity * intent.unitPriceCents,
    currency: intent.currency,
    status: "PENDING_PAYMENT",
    request_id: intent.requestId,
    created_at: new Date(intent.createdMs),
    payment_deadline: new Date(intent.deadlineMs),
    paid_at: null,
    cancelled_at: null,
    cancel_reason: null,
    payment_id: null,
  };
}
