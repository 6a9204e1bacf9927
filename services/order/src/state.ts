/**
 * The order state machine, pure: PENDING_PAYMENT → PAID | CANCELLED, both
 * final. These functions decide what a request may try; the database decides
 * who wins, with one conditional UPDATE per transition (store.ts), so a
 * payment and a cancellation can never both succeed.
 */
import type { OrderStatusName } from "./db.ts";

export const FINAL: ReadonlySet<OrderStatusName> = new Set(["PAID", "CANCELLED"]);

const transitions: Record<OrderStatusName, readonly OrderStatusName[]> = {
  PENDING_PAYMENT: ["PAID", "CANCELLED"],
  PAID: [],
  CANCELLED: [],
};

export function canTransition(from: OrderStatusName, to: OrderStatusName): boolean {
  return transitions[from].includes(to);
}

/** Cancel reasons the system writes itself; a buyer's free text is stored as given. */
export const CancelReason = {
  TIMEOUT: "payment_timeout",
  USER: "user_cancelled",
  ADMIN: "admin",
} as const;

/** What the state machine needs to know of an order. */
export interface OrderState {
  status: OrderStatusName;
  payment_id: string | null;
  cancel_reason: string | null;
  cancelled_at: Date | null;
}

export type Decision =
  /** The order is in the start state: try the conditional update. */
  | { kind: "attempt" }
  /** Already in the state asked for: answer the order, change nothing. */
  | { kind: "done" }
  /** Not possible from this state: FAILED_PRECONDITION with this message. */
  | { kind: "refuse"; message: string };

export function decidePay(order: OrderState, paymentId: string): Decision {
  switch (order.status) {
    case "PENDING_PAYMENT":
      return { kind: "attempt" };
    case "PAID":
      return order.payment_id === paymentId
        ? { kind: "done" }
        : { kind: "refuse", message: "order is already paid with another payment_id" };
    case "CANCELLED":
      return { kind: "refuse", message: latePaymentMessage(order) };
  }
}

export function decideCancel(order: OrderState): Decision {
  switch (order.status) {
    case "PENDING_PAYMENT":
      return { kind: "attempt" };
    case "CANCELLED":
      return { kind: "done" };
    case "PAID":
      return { kind: "refuse", message: "order is paid and can no longer be cancelled" };
  }
}

/**
 * After a conditional Pay update changed nothing, the fresh row tells why. A
 * row still PENDING_PAYMENT means the deadline had passed by the database's
 * clock (the sweeper has not cancelled it yet).
 */
export function explainLostPay(order: OrderState, paymentId: string): Decision {
  if (order.status === "PENDING_PAYMENT")
    return {
      kind: "refuse",
      message: "payment refused: the payment deadline has passed; the order is being cancelled",
    };
  return decidePay(order, paymentId);
}

function latePaymentMessage(order: OrderState): string {
  const when = order.cancelled_at ? ` at ${order.cancelled_at.toISOString()}` : "";
  return order.cancel_reason === CancelReason.TIMEOUT
    ? `payment refused: the order was cancelled${when} because its payment deadline passed; its stock went back on sale`
    : `payment refused: the order was cancelled${when} (${order.cancel_reason ?? "cancelled"})`;
}

/** The short machine-readable reason sent to core's Release. */
export function releaseReason(cancelReason: string | null): string {
  return cancelReason === CancelReason.TIMEOUT || cancelReason === CancelReason.ADMIN
    ? cancelReason
    : CancelReason.USER;
}

export const MAX_CANCEL_REASON = 255;

/** The stored reason of a Cancel call: the buyer's text, or the default for who cancelled. */
export function cancelReasonOf(text: string, byAdminOfOthersOrder: boolean): string {
  const trimmed = text.trim();
  if (trimmed !== "") return trimmed;
  return byAdminOfOthersOrder ? CancelReason.ADMIN : CancelReason.USER;
}
