/**
 * Property: any sequence of reserve (batched, with retries) / release /
 * confirm / warm-up calls against the real scripts answers exactly what a
 * simple in-memory model answers, and after every step the invariants hold:
 * I1 no oversell, I3 per-user limit, I4 idempotency, I5 conservation.
 * One redis-server for all runs; every run uses a fresh activity id.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { Redis } from "ioredis";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import { type RedisServer, startRedis } from "../../shared/src/stack/index.ts";
import { type ReserveInput, type ReserveResult, StockStore } from "./store.ts";
import { definition } from "./testing.ts";

const RUNS = Number(process.env.PROPERTY_RUNS ?? 500);
const HOUR = 3_600_000;
const USERS = ["ann", "bob", "cat", "dan"];

type Window = "open" | "future" | "past";

type ReserveSpec = { user: number; qty: number; retry: number | null };
type Op =
  | { kind: "reserve"; items: ReserveSpec[] }
  | { kind: "release"; target: number | null }
  | { kind: "confirm"; target: number | null }
  | {
      kind: "warm";
      total: number;
      limit: number;
      window: Window;
      ended: boolean;
      revDelta: number;
      create: boolean;
    };

const reserveSpec = fc.record({
  user: fc.nat({ max: USERS.length - 1 }),
  qty: fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 2 }) },
    { weight: 1, arbitrary: fc.integer({ min: -1, max: 5 }) },
  ),
  // null: a new request id; n: a retry of an earlier request (index mod their count).
  retry: fc.option(fc.nat({ max: 50 }), { freq: 3 }),
});
const warmOp = fc.record({
  kind: fc.constant("warm" as const),
  total: fc.nat({ max: 12 }),
  limit: fc.integer({ min: 1, max: 4 }),
  window: fc.constantFrom<Window>("open", "open", "open", "open", "future", "past"),
  ended: fc.constantFrom(false, false, false, false, true),
  revDelta: fc.integer({ min: -1, max: 2 }),
  create: fc.constantFrom(true, true, true, false),
});
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("reserve" as const),
      items: fc.array(reserveSpec, { minLength: 1, maxLength: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("release" as const),
      target: fc.option(fc.nat({ max: 50 }), { freq: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("confirm" as const),
      target: fc.option(fc.nat({ max: 50 }), { freq: 6 }),
    }),
  },
  { weight: 1, arbitrary: warmOp },
);
const scenario = fc.record({
  initial: fc.option(
    warmOp.map((o) => ({ ...o, create: true })),
    { freq: 8 },
  ),
  ops: fc.array(op, { minLength: 1, maxLength: 30, size: "medium" }),
});

/** The model: what the scripts should do, in plain TypeScript. */
class Model {
  warmed = false;
  total = 0;
  stock = 0;
  reserved = 0;
  paid = 0;
  limit = 0;
  window: Window = "open";
  ended = false;
  revision = 0;
  readonly users = new Map<string, number>();
  /** request id → order id of the reservation it made. */
  readonly requests = new Map<string, { orderId: string; deadlineMs: number }>();
  readonly reservations = new Map<string, { user: string; qty: number; status: string }>();
  readonly orderIds: string[] = [];
  /** Every request sent so far, for retries. */
  readonly sent: ReserveInput[] = [];

  reserve(item: ReserveInput, actualOrderId: string): Partial<ReserveResult> {
    const left = (result: BuyResult) => ({
      result,
      remaining: this.stock,
      replayed: false,
      orderId: "",
      soldOut: this.stock === 0,
    });
    if (item.quantity < 1)
      return { result: BuyResult.INVALID_QUANTITY, remaining: 0, replayed: false, soldOut: false };
    if (!this.warmed)
      return { result: BuyResult.NOT_FOUND, remaining: 0, replayed: false, soldOut: false };
    const seen = this.requests.get(item.requestId);
    if (seen)
      return {
        result: BuyResult.RESERVED,
        orderId: seen.orderId,
        deadlineMs: seen.deadlineMs,
        remaining: this.stock,
        replayed: true,
        soldOut: this.stock === 0,
      };
    if (item.quantity > this.limit) return left(BuyResult.INVALID_QUANTITY);
    if (this.ended || this.window === "past") return left(BuyResult.ENDED);
    if (this.window === "future") return left(BuyResult.NOT_STARTED);
    const held = this.users.get(item.userId) ?? 0;
    if (held + item.quantity > this.limit) return left(BuyResult.LIMIT_REACHED);
    if (this.stock < item.quantity) return left(BuyResult.SOLD_OUT);
    this.stock -= item.quantity;
    this.reserved += item.quantity;
    this.users.set(item.userId, held + item.quantity);
    this.reservations.set(actualOrderId, {
      user: item.userId,
      qty: item.quantity,
      status: "RESERVED",
    });
    this.orderIds.push(actualOrderId);
    return {
      result: BuyResult.RESERVED,
      orderId: actualOrderId,
      remaining: this.stock,
      replayed: false,
      soldOut: this.stock === 0,
    };
  }

  remember(requestId: string, orderId: string, deadlineMs: number) {
    this.requests.set(requestId, { orderId, deadlineMs });
  }

  release(orderId: string) {
    if (!this.warmed) return { outcome: "not_warmed", remaining: 0 };
    const r = this.reservations.get(orderId);
    if (!r) return { outcome: "not_found", remaining: this.stock };
    if (r.status === "PAID") return { outcome: "paid", remaining: this.stock };
    if (r.status === "RELEASED") return { outcome: "already_released", remaining: this.stock };
    r.status = "RELEASED";
    this.stock += r.qty;
    this.reserved -= r.qty;
    const held = (this.users.get(r.user) ?? 0) - r.qty;
    if (held > 0) this.users.set(r.user, held);
    else this.users.delete(r.user);
    return { outcome: "released", remaining: this.stock };
  }

  confirm(orderId: string) {
    if (!this.warmed) return "not_warmed";
    const r = this.reservations.get(orderId);
    if (!r) return "not_found";
    if (r.status === "PAID") return "already_paid";
    if (r.status === "RELEASED") return "released";
    r.status = "PAID";
    this.reserved -= r.qty;
    this.paid += r.qty;
    return "confirmed";
  }

  warm(o: Extract<Op, { kind: "warm" }>) {
    if (!this.warmed) {
      if (!o.create)
        return { alreadyWarm: false, applied: false, remaining: 0, revision: -1, total: 0 };
      this.warmed = true;
      this.total = this.stock = o.total;
      this.revision = 1;
      this.setDefinition(o);
      return { alreadyWarm: false, applied: true, remaining: o.total, revision: 1, total: o.total };
    }
    const revision = this.revision + o.revDelta;
    const applied = revision >= this.revision;
    if (applied) {
      this.revision = revision;
      this.setDefinition(o);
    }
    return {
      alreadyWarm: true,
      applied,
      remaining: this.stock,
      revision: this.revision,
      total: this.total,
    };
  }

  /** The revision the next warm-up op sends. */
  nextRevision(o: Extract<Op, { kind: "warm" }>) {
    return this.warmed ? this.revision + o.revDelta : 1;
  }

  private setDefinition(o: Extract<Op, { kind: "warm" }>) {
    this.limit = o.limit;
    this.window = o.window;
    this.ended = o.ended;
  }
}

function windowMs(window: Window) {
  const now = Date.now();
  if (window === "open") return { startMs: now - HOUR, endMs: now + HOUR };
  if (window === "future") return { startMs: now + HOUR, endMs: now + 2 * HOUR };
  return { startMs: now - 2 * HOUR, endMs: now - HOUR };
}

describe("stock scripts against a model (fast-check)", () => {
  let server: RedisServer;
  let redis: Redis;
  let store: StockStore;
  let run = 0;

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { enableAutoPipelining: false });
    store = new StockStore(redis);
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  /** Reads the activity's real state and checks it against the model and the invariants. */
  async function check(id: string, model: Model, step: string) {
    const k = activityKeys(id);
    const p = redis.pipeline();
    p.hget(k.meta, "total").get(k.stock).get(k.reserved).get(k.paid);
    p.hgetall(k.users).hgetall(k.req).xrange(k.orders, "-", "+");
    for (const oid of model.orderIds) p.hmget(k.reservation(oid), "user", "qty", "status");
    const replies = (await p.exec())!.map(([err, value]) => {
      if (err) throw err;
      return value;
    });
    const [total = 0, stock = 0, reserved = 0, paid = 0] = replies
      .slice(0, 4)
      .map((v) => Number(v ?? 0));
    const users = replies[4] as Record<string, string>;
    const requests = replies[5] as Record<string, string>;
    const stream = replies[6] as [string, string[]][];
    const records = replies.slice(7) as (string | null)[][];
    const at = `after ${step}`;

    if (!model.warmed) {
      assert.equal(total + stock + reserved + paid + stream.length, 0, `${at}: nothing warmed`);
      return;
    }
    // I5 conservation, and the counters as the model has them.
    assert.equal(stock + reserved + paid, total, `${at}: I5`);
    assert.deepEqual(
      [total, stock, reserved, paid],
      [model.total, model.stock, model.reserved, model.paid],
      `${at}: counters`,
    );
    // I1 no oversell: what is held never exceeds the total, stock never negative.
    let held = 0;
    records.forEach(([user, qty, status], i) => {
      const expected = model.reservations.get(model.orderIds[i]!)!;
      assert.deepEqual(
        [user, Number(qty), status],
        [expected.user, expected.qty, expected.status],
        `${at}: record`,
      );
      if (status !== "RELEASED") held += Number(qty);
    });
    assert.ok(stock >= 0 && held <= total && held === reserved + paid, `${at}: I1`);
    // I3: the users hash is exactly what the live reservations hold.
    assert.deepEqual(
      new Map(Object.entries(users).map(([u, n]) => [u, Number(n)])),
      model.users,
      `${at}: I3 holdings`,
    );
    // I4: one reservation, one remembered answer and one stream entry per reserving request id.
    const streamIds = stream.map(([, f]) => f[f.indexOf("oid") + 1]);
    assert.deepEqual(streamIds, model.orderIds, `${at}: I4 one order intent per reservation`);
    assert.deepEqual(
      new Map(Object.entries(requests).map(([rid, v]) => [rid, v.split("|")[1]])),
      new Map([...model.requests].map(([rid, r]) => [rid, r.orderId])),
      `${at}: I4 remembered answers`,
    );
  }

  it(`answers like the model and keeps I1, I3, I4, I5 after every step (${RUNS} runs)`, async () => {
    let steps = 0;
    const seen = new Map<string, number>();
    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(scenario, async ({ initial, ops }) => {
        const id = `prop-${++run}`;
        const model = new Model();
        let requestCounter = 0;
        const all: Op[] = initial ? [initial, ...ops] : ops;
        for (const [index, o] of all.entries()) {
          steps++;
          const step = `step ${index} ${JSON.stringify(o)}`;
          if (o.kind === "reserve") {
            const items: ReserveInput[] = o.items.map((spec) => {
              if (spec.retry !== null && model.sent.length > 0)
                return model.sent[spec.retry % model.sent.length]!;
              const sent = {
                activityId: id,
                userId: USERS[spec.user]!,
                quantity: spec.qty,
                requestId: `r${++requestCounter}`,
              };
              model.sent.push(sent);
              return sent;
            });
            const actual = await store.reserveBatch(items);
            actual.forEach((got, i) => {
              const label = `${BuyResult[got.result]}${got.replayed ? " (replayed)" : ""}`;
              seen.set(label, (seen.get(label) ?? 0) + 1);
              const expected = model.reserve(items[i]!, got.orderId);
              const { result, orderId, remaining, replayed, soldOut } = got;
              assert.deepEqual(
                { result: BuyResult[result], orderId, remaining, replayed, soldOut },
                {
                  result: BuyResult[expected.result!],
                  orderId: expected.orderId ?? "",
                  remaining: expected.remaining,
                  replayed: expected.replayed,
                  soldOut: expected.soldOut,
                },
                `${step}: item ${i}`,
              );
              if (expected.deadlineMs !== undefined)
                assert.equal(got.deadlineMs, expected.deadlineMs);
              if (got.result === BuyResult.RESERVED && !got.replayed) {
                model.remember(items[i]!.requestId, got.orderId, got.deadlineMs);
                // I3 at the moment of reserving: the buyer holds no more than the limit.
                assert.ok((model.users.get(items[i]!.userId) ?? 0) <= model.limit, `${step}: I3`);
              }
            });
          } else if (o.kind === "release" || o.kind === "confirm") {
            const orderId =
              o.target === null || model.orderIds.length === 0
                ? `unknown-${o.target}`
                : model.orderIds[o.target % model.orderIds.length]!;
            if (o.kind === "release") {
              const got = await store.release(id, orderId, "property");
              assert.deepEqual(got, model.release(orderId), step);
            } else {
              assert.equal(await store.confirmPayment(id, orderId), model.confirm(orderId), step);
            }
          } else {
            const got = await store.warmUp(
              definition({
                id,
                totalStock: o.total,
                perUserLimit: o.limit,
                revision: model.nextRevision(o),
                status: o.ended ? "ENDED" : "PUBLISHED",
                ...windowMs(o.window),
              }),
              { create: o.create },
            );
            assert.deepEqual(got, model.warm(o), step);
          }
          await check(id, model, step);
        }
      }),
      { numRuns: RUNS },
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `property: ${RUNS} runs, ${steps} steps in ${seconds.toFixed(1)} s; reserve answers: ${JSON.stringify(Object.fromEntries(seen))}`,
    );
  });
});
