import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { OrderStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { OrderSchema } from "../../gen/seckill/order/v1/order_pb.ts";
import { decodePageToken, encodePageToken, isFinal, orderFromRow } from "./views.ts";

describe("order views", () => {
  it("maps a row to the API order", () => {
    const order = orderFromRow({
      id: "01ABC",
      activity_id: "a",
      product_id: "p",
      user_id: "u",
      quantity: 3,
      unit_price_cents: 250,
      amount_cents: 750,
      currency: "EUR",
      status: "CANCELLED",
      request_id: "r",
      created_at: new Date(1000),
      payment_deadline: new Date(2000),
      paid_at: null,
      cancelled_at: new Date(3000),
      cancel_reason: "payment_timeout",
      payment_id: null,
      stock_settled: 1,
    });
    assert.equal(order.reservationId, "01ABC");
    assert.equal(order.amountCents, 750n);
    assert.equal(order.status, OrderStatus.CANCELLED);
    assert.equal(order.paidAt, undefined);
    assert.equal(order.cancelledAt?.seconds, 3n);
    assert.equal(order.paymentId, "");
    assert.ok(isFinal(order.status));
    assert.ok(!isFinal(OrderStatus.CREATING));
  });

  it("page tokens round-trip, are bound to the activity filter, and refuse garbage", () => {
    const last = create(OrderSchema, { id: "01XYZ", createdAt: timestampFromMs(1234) });
    const token = encodePageToken(last, "act-1");
    assert.deepEqual(decodePageToken(token, "act-1"), { createdMs: 1234, id: "01XYZ" });
    assert.deepEqual(decodePageToken("", "act-1"), undefined);
    assert.match((decodePageToken(token, "") as { error: string }).error, /another activity_id/);
    for (const junk of ["%%%", "bm90IGpzb24", Buffer.from('{"v":2}').toString("base64url")])
      assert.ok("error" in (decodePageToken(junk, "") as object), junk);
  });
});
