import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MismatchKind } from "../../gen/seckill/admin/v1/admin_pb.ts";
import {
  type ActivitySnapshot,
  compareActivity,
  compareStreamIds,
  type OrderFacts,
  type ReservationFacts,
} from "./reconcile-rules.ts";

const NOW = 1_900_000_000_000;
const GRACE = 60_000;

/** A consistent sale: o1 reserved (pending), o2 paid, o3 released (cancelled), all acknowledged. */
function sale(): ActivitySnapshot {
  const reservations = new Map<string, ReservationFacts | undefined>([
    ["o1", { user: "u1", qty: 2, status: "RESERVED", createdMs: NOW - 5000 }],
    ["o2", { user: "u2", qty: 1, status: "PAID", createdMs: NOW - 5000 }],
    ["o3", { user: "u3", qty: 1, status: "RELEASED", createdMs: NOW - 5000 }],
  ]);
  const orders = new Map<string, OrderFacts>([
    ["o1", { user: "u1", qty: 2, status: "PENDING_PAYMENT", settled: 0, finalMs: undefined }],
    ["o2", { user: "u2", qty: 1, status: "PAID", settled: 1, finalMs: NOW - 1000 }],
    ["o3", { user: "u3", qty: 1, status: "CANCELLED", settled: 1, finalMs: NOW - 1000 }],
  ]);
  return {
    activityId: "a1",
    expected: {
      revision: 3,
      totalStock: 10,
      perUserLimit: 2,
      maxPerUserLimit: 2,
      startMs: NOW - 3_600_000,
      endMs: NOW + 3_600_000,
      status: "PUBLISHED",
      paymentTimeoutSeconds: 900,
      json: "{json}",
    },
    etcdJson: "{json}",
    etcdRevision: 3,
    meta: {
      revision: "3",
      limit: "2",
      start_ms: String(NOW - 3_600_000),
      end_ms: String(NOW + 3_600_000),
      pay_timeout_s: "900",
      status: "PUBLISHED",
    },
    counters: { total: 10, remaining: 7, reserved: 2, paid: 1 },
    users: new Map([
      ["u1", 2],
      ["u2", 1],
    ]),
    entries: [
      { streamId: `${NOW - 5000}-0`, orderId: "o1" },
      { streamId: `${NOW - 5000}-1`, orderId: "o2" },
      { streamId: `${NOW - 5000}-2`, orderId: "o3" },
    ],
    reservations,
    stream: { groupExists: true, lastDeliveredId: `${NOW - 5000}-2`, pending: new Set() },
    orders,
  };
}

const kinds = (s: ActivitySnapshot) =>
  compareActivity(s, NOW, GRACE).map((f) => `${MismatchKind[f.kind]} ${f.key}`);

describe("reconcile rules", () => {
  it("finds nothing in a consistent sale", () => {
    assert.deepEqual(compareActivity(sale(), NOW, GRACE), []);
  });

  it("compares stream ids numerically", () => {
    assert.equal(compareStreamIds("10-0", "9-5"), 1);
    assert.equal(compareStreamIds("10-2", "10-10"), -1);
    assert.equal(compareStreamIds("10-2", "10-2"), 0);
  });

  it("treats an unacknowledged intent without a row as in flight, then as missing after the grace", () => {
    const s = sale();
    (s.orders as Map<string, OrderFacts>).delete("o1");
    s.stream = { ...s.stream, lastDeliveredId: `${NOW - 5000}-0`, pending: new Set() };
    // o1 was delivered and acknowledged before the rows were read: lost.
    assert.deepEqual(kinds(s), ["MISSING_ORDER o1", "COUNTER {act:a1}:reserved+paid"]);
    // Delivered but not acknowledged: in flight.
    s.stream = { ...s.stream, pending: new Set([`${NOW - 5000}-0`]) };
    assert.deepEqual(kinds(s), []);
    // ... for longer than the grace: reported.
    assert.deepEqual(
      compareActivity(s, NOW + GRACE + 10_000, GRACE).map((f) => MismatchKind[f.kind]),
      ["MISSING_ORDER", "COUNTER"],
    );
  });

  it("treats a final order core was not told about yet as in flight", () => {
    const s = sale();
    const res = s.reservations as Map<string, ReservationFacts | undefined>;
    res.set("o2", { ...res.get("o2")!, status: "RESERVED" });
    res.set("o3", { ...res.get("o3")!, status: "RESERVED" });
    (s.orders as Map<string, OrderFacts>).set("o2", { ...s.orders.get("o2")!, settled: 0 });
    (s.orders as Map<string, OrderFacts>).set("o3", { ...s.orders.get("o3")!, settled: 0 });
    s.counters = { total: 10, remaining: 6, reserved: 4, paid: 0 };
    s.users = new Map([
      ["u1", 2],
      ["u2", 1],
      ["u3", 1],
    ]);
    assert.deepEqual(kinds(s), []);
    // Settled but Redis disagrees: a real mismatch.
    (s.orders as Map<string, OrderFacts>).set("o2", { ...s.orders.get("o2")!, settled: 1 });
    assert.deepEqual(kinds(s), ["STATUS o2", "COUNTER {act:a1}:paid"]);
  });

  it("reports broken counters, orphans, quantities, limits and config", () => {
    const s = sale();
    s.counters = { total: 10, remaining: 8, reserved: 2, paid: 1 };
    assert.deepEqual(kinds(s), ["CONSERVATION {act:a1}:stock"]);

    const t = sale();
    (t.orders as Map<string, OrderFacts>).set("o9", {
      user: "u9",
      qty: 2,
      status: "PENDING_PAYMENT",
      settled: 0,
      finalMs: undefined,
    });
    (t.orders as Map<string, OrderFacts>).set("o1", { ...t.orders.get("o1")!, qty: 1 });
    t.users = new Map([
      ["u1", 3],
      ["u2", 1],
    ]);
    assert.deepEqual(kinds(t), [
      "QUANTITY o1",
      "ORPHAN_ORDER o9",
      "COUNTER {act:a1}:reserved+paid",
      "COUNTER {act:a1}:users u1",
      "USER_LIMIT {act:a1}:users u1",
    ]);

    const u = sale();
    u.etcdJson = undefined;
    u.etcdRevision = undefined;
    u.meta = { ...u.meta, limit: "5" };
    assert.deepEqual(kinds(u), ["CONFIG /seckill/activities/a1", "CONFIG {act:a1}:meta limit"]);
  });
});
