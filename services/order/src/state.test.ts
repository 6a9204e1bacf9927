import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { OrderStatusName } from "./db.ts";
import {
  CancelReason,
  cancelReasonOf,
  canTransition,
  decideCancel,
  decidePay,
  explainLostPay,
  type OrderState,
  releaseReason,
} from "./state.ts";

const order = (status: OrderStatusName, o: Partial<OrderState> = {}): OrderState => ({
  status,
  payment_id: null,
  cancel_reason: null,
  cancelled_at: null,
  ...o,
});

describe("order state machine", () => {
  it("allows only PENDING_PAYMENT → PAID | CANCELLED; both are final", () => {
    const all: OrderStatusName[] = ["PENDING_PAYMENT", "PAID", "CANCELLED"];
    const allowed = all.flatMap((from) =>
      all.filter((to) => canTransition(from, to)).map((to) => `${from}→${to}`),
    );
    assert.deepEqual(allowed, ["PENDING_PAYMENT→PAID", "PENDING_PAYMENT→CANCELLED"]);
  });

  it("Pay: attempts a pending order; answers a repeat of the winning payment; refuses others", () => {
    assert.deepEqual(decidePay(order("PENDING_PAYMENT"), "p1"), { kind: "attempt" });
    assert.deepEqual(decidePay(order("PAID", { payment_id: "p1" }), "p1"), { kind: "done" });
    const other = decidePay(order("PAID", { payment_id: "p1" }), "p2");
    assert.equal(other.kind, "refuse");
    assert.match((other as { message: string }).message, /another payment_id/);
  });

  it("a late payment names the cancellation and its reason", () => {
    const at = new Date("2026-01-02T03:04:05.678Z");
    const late = decidePay(
      order("CANCELLED", { cancel_reason: CancelReason.TIMEOUT, cancelled_at: at }),
      "p",
    );
    assert.equal(late.kind, "refuse");
    assert.match(
      (late as { message: string }).message,
      /cancelled at 2026-01-02T03:04:05.678Z because its payment deadline passed/,
    );
    const byBuyer = decidePay(order("CANCELLED", { cancel_reason: "too expensive" }), "p");
    assert.match((byBuyer as { message: string }).message, /\(too expensive\)/);
  });

  it("a lost conditional Pay on a still-pending row means the deadline passed", () => {
    const d = explainLostPay(order("PENDING_PAYMENT"), "p");
    assert.equal(d.kind, "refuse");
    assert.match((d as { message: string }).message, /deadline has passed/);
    assert.deepEqual(explainLostPay(order("PAID", { payment_id: "p" }), "p"), { kind: "done" });
  });

  it("Cancel: attempts a pending order, answers a cancelled one, refuses a paid one", () => {
    assert.deepEqual(decideCancel(order("PENDING_PAYMENT")), { kind: "attempt" });
    assert.deepEqual(decideCancel(order("CANCELLED")), { kind: "done" });
    assert.equal(decideCancel(order("PAID")).kind, "refuse");
  });

  it("reasons: the buyer's text is kept; core gets a short machine reason", () => {
    assert.equal(cancelReasonOf("  ", false), "user_cancelled");
    assert.equal(cancelReasonOf("", true), "admin");
    assert.equal(cancelReasonOf(" found it cheaper ", false), "found it cheaper");
    assert.equal(releaseReason("payment_timeout"), "payment_timeout");
    assert.equal(releaseReason("admin"), "admin");
    assert.equal(releaseReason("found it cheaper"), "user_cancelled");
    assert.equal(releaseReason(null), "user_cancelled");
  });
});
