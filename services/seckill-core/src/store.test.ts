/** The Lua scripts, case by case, against a real redis-server. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import { type RedisServer, startRedis } from "../../shared/src/stack/index.ts";
import { auditActivity, snapshotRedis } from "../../shared/src/testing/redis-state.ts";
import { type ReserveInput, StockStore } from "./store.ts";
import { definition } from "./testing.ts";

const HOUR = 3_600_000;

describe("stock scripts", () => {
  let server: RedisServer;
  let redis: Redis;
  let store: StockStore;
  let n = 0;
  /** A fresh activity id per test, so tests never see each other's keys. */
  const fresh = () => `case-${++n}`;
  const item = (activityId: string, o: Partial<ReserveInput> = {}): ReserveInput => ({
    activityId,
    userId: "u1",
    quantity: 1,
    requestId: `req-${Math.random().toString(36).slice(2)}`,
    ...o,
  });
  const reserve = async (i: ReserveInput) => (await store.reserveBatch([i]))[0]!;
  const warm = async (id: string, o: Parameters<typeof definition>[0] = {}) =>
    store.warmUp(definition({ id, ...o }), { create: true });
  const audit = async (id: string) => {
    const a = await auditActivity(redis, id);
    assert.deepEqual(a.violations, [], `invariants of ${id}`);
    return a;
  };

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { enableAutoPipelining: false });
    store = new StockStore(redis);
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it("reserves: stock, reserved, user holdings, reservation record and order intent together", async () => {
    const id = fresh();
    await warm(id, { totalStock: 5, paymentTimeoutSeconds: 60 });
    const before = Date.now();
    const r = await reserve(item(id, { userId: "alice", quantity: 2, requestId: "r-1" }));
    assert.equal(r.result, BuyResult.RESERVED);
    assert.equal(r.orderId.length, 26);
    assert.equal(r.remaining, 3);
    assert.equal(r.replayed, false);
    assert.equal(r.soldOut, false);
    assert.ok(Math.abs(r.deadlineMs - (before + 60_000)) < 5000, `deadline ${r.deadlineMs}`);
    const k = activityKeys(id);
    assert.deepEqual(await redis.hgetall(k.reservation(r.orderId)), {
      user: "alice",
      qty: "2",
      status: "RESERVED",
      deadline_ms: String(r.deadlineMs),
      request_id: "r-1",
      created_ms: String(r.deadlineMs - 60_000),
    });
    const entries = await redis.xrange(k.orders, "-", "+");
    assert.equal(entries.length, 1);
    const fields = entries[0]![1];
    const entry = Object.fromEntries(
      fields.flatMap((_, i) => (i % 2 ? [] : [[fields[i], fields[i + 1]]])),
    );
    assert.deepEqual(entry, {
      oid: r.orderId,
      act: id,
      uid: "alice",
      qty: "2",
      price: "1999",
      cur: "USD",
      pid: "prod-1",
      dl: String(r.deadlineMs),
      rid: "r-1",
      ts: String(r.deadlineMs - 60_000),
    });
    const a = await audit(id);
    assert.deepEqual([a.stock, a.reserved, a.paid], [3, 2, 0]);
    assert.equal(a.users.get("alice"), 2);
  });

  it("replays a retried request id: same order id and deadline, nothing reserved", async () => {
    const id = fresh();
    await warm(id, { totalStock: 5, perUserLimit: 5 });
    const first = await reserve(item(id, { requestId: "same" }));
    const before = await snapshotRedis(redis, `{act:${id}}*`);
    const retry = await reserve(item(id, { requestId: "same" }));
    assert.equal(retry.result, BuyResult.RESERVED);
    assert.equal(retry.replayed, true);
    assert.equal(retry.orderId, first.orderId);
    assert.equal(retry.deadlineMs, first.deadlineMs);
    assert.equal(retry.remaining, 4);
    assert.deepEqual(await snapshotRedis(redis, `{act:${id}}*`), before, "nothing changed");
    // Even within one batch, and even after the stock ran out.
    const batch = await store.reserveBatch([
      item(id, { userId: "b", quantity: 4, requestId: "big" }),
      item(id, { requestId: "same" }),
      item(id, { userId: "b", quantity: 4, requestId: "big" }),
    ]);
    assert.deepEqual(
      batch.map((r) => [BuyResult[r.result], r.replayed]),
      [
        ["RESERVED", false],
        ["RESERVED", true],
        ["RESERVED", true],
      ],
    );
    assert.equal(batch[2]!.orderId, batch[0]!.orderId);
    const a = await audit(id);
    assert.equal(a.reservations.size, 2);
  });

  it("answers NOT_FOUND for an activity that is not warmed, and writes nothing", async () => {
    const id = fresh();
    const r = await reserve(item(id));
    assert.equal(r.result, BuyResult.NOT_FOUND);
    assert.equal(r.soldOut, false, "NOT_FOUND must not be cached as sold out");
    assert.deepEqual(await snapshotRedis(redis, `{act:${id}}*`), {});
  });

  it("answers INVALID_QUANTITY for quantity < 1 (without Redis) and above the per-user limit", async () => {
    const id = fresh();
    await warm(id, { perUserLimit: 2 });
    const before = await snapshotRedis(redis, `{act:${id}}*`);
    const results = await store.reserveBatch([
      item(id, { quantity: 0 }),
      item(id, { quantity: -3 }),
      item(id, { quantity: 3 }),
    ]);
    assert.deepEqual(
      results.map((r) => [BuyResult[r.result], r.source]),
      [
        ["INVALID_QUANTITY", "input"],
        ["INVALID_QUANTITY", "input"],
        ["INVALID_QUANTITY", "script"],
      ],
    );
    assert.deepEqual(await snapshotRedis(redis, `{act:${id}}*`), before, "nothing changed");
  });

  it("answers NOT_STARTED before the window and ENDED after it or when ended early, remembering neither", async () => {
    const now = Date.now();
    const early = fresh();
    await warm(early, { startMs: now + HOUR, endMs: now + 2 * HOUR });
    assert.equal((await reserve(item(early, { requestId: "x" }))).result, BuyResult.NOT_STARTED);
    const late = fresh();
    await warm(late, { startMs: now - 2 * HOUR, endMs: now - HOUR });
    assert.equal((await reserve(item(late, { requestId: "x" }))).result, BuyResult.ENDED);
    const stopped = fresh();
    await warm(stopped, { status: "ENDED" });
    assert.equal((await reserve(item(stopped, { requestId: "x" }))).result, BuyResult.ENDED);
    for (const id of [early, late, stopped]) {
      assert.equal(await redis.exists(activityKeys(id).req), 0, "refusals are not remembered");
      assert.equal((await audit(id)).reservations.size, 0);
    }
    // The window opening later lets the same request id through: it never reserved before.
    await store.warmUp(definition({ id: early, revision: 2 }), { create: false });
    assert.equal((await reserve(item(early, { requestId: "x" }))).result, BuyResult.RESERVED);
  });

  it("holds the per-user limit across several requests, and frees it on release", async () => {
    const id = fresh();
    await warm(id, { totalStock: 100, perUserLimit: 3 });
    const results = await store.reserveBatch([
      item(id, { userId: "carol", quantity: 2 }),
      item(id, { userId: "carol", quantity: 2 }),
      item(id, { userId: "carol", quantity: 1 }),
      item(id, { userId: "carol", quantity: 1 }),
      item(id, { userId: "dave", quantity: 3 }),
    ]);
    assert.deepEqual(
      results.map((r) => BuyResult[r.result]),
      ["RESERVED", "LIMIT_REACHED", "RESERVED", "LIMIT_REACHED", "RESERVED"],
    );
    assert.equal((await audit(id)).users.get("carol"), 3);
    await store.release(id, results[0]!.orderId, "test");
    const again = await reserve(item(id, { userId: "carol", quantity: 2 }));
    assert.equal(again.result, BuyResult.RESERVED);
    assert.equal((await audit(id)).users.get("carol"), 3);
  });

  it("answers SOLD_OUT when stock < quantity; the sold-out flag is set only when stock is 0", async () => {
    const id = fresh();
    await warm(id, { totalStock: 3, perUserLimit: 3 });
    const [a, b, c, d] = await store.reserveBatch([
      item(id, { userId: "a", quantity: 2 }),
      item(id, { userId: "b", quantity: 2 }),
      item(id, { userId: "c", quantity: 1 }),
      item(id, { userId: "d", quantity: 1 }),
    ]);
    assert.deepEqual([a!.result, a!.remaining, a!.soldOut], [BuyResult.RESERVED, 1, false]);
    assert.deepEqual([b!.result, b!.remaining, b!.soldOut], [BuyResult.SOLD_OUT, 1, false]);
    assert.deepEqual([c!.result, c!.remaining, c!.soldOut], [BuyResult.RESERVED, 0, true]);
    assert.deepEqual([d!.result, d!.remaining, d!.soldOut], [BuyResult.SOLD_OUT, 0, true]);
    assert.equal((await audit(id)).stock, 0);
  });

  it("answers from the request ids alone for an activity flagged sold out", async () => {
    const id = fresh();
    await warm(id, { totalStock: 1 });
    const won = await reserve(item(id, { requestId: "winner" }));
    const results = await store.reserveBatch(
      [item(id, { requestId: "winner" }), item(id, { requestId: "late" })],
      (activityId) => activityId === id,
    );
    assert.deepEqual(
      results.map((r) => [BuyResult[r.result], r.orderId, r.replayed, r.soldOut, r.source]),
      [
        ["RESERVED", won.orderId, true, true, "sold_out_cache"],
        ["SOLD_OUT", "", false, true, "sold_out_cache"],
      ],
    );
  });

  it("releases exactly once, publishes a restock, and never touches a paid reservation", async () => {
    const id = fresh();
    await warm(id, { totalStock: 4, perUserLimit: 4 });
    const r1 = await reserve(item(id, { userId: "e", quantity: 2 }));
    const r2 = await reserve(item(id, { userId: "f", quantity: 1 }));
    const sub = redis.duplicate();
    const messages: string[] = [];
    sub.on("message", (_channel, message) => messages.push(message));
    await sub.subscribe(activityKeys(id).restock);
    try {
      assert.deepEqual(await store.release(id, r1.orderId, "payment_timeout"), {
        outcome: "released",
        remaining: 3,
      });
      assert.deepEqual(await store.release(id, r1.orderId, "payment_timeout"), {
        outcome: "already_released",
        remaining: 3,
      });
      assert.equal(await store.confirmPayment(id, r1.orderId), "released", "too late to pay");
      assert.equal(await store.confirmPayment(id, r2.orderId), "confirmed");
      assert.equal(await store.confirmPayment(id, r2.orderId), "already_paid");
      assert.deepEqual(await store.release(id, r2.orderId, "admin"), {
        outcome: "paid",
        remaining: 3,
      });
      assert.equal((await store.release(id, "no-such-id", "x")).outcome, "not_found");
      assert.equal((await store.release(fresh(), "no-such-id", "x")).outcome, "not_warmed");
      assert.equal(await store.confirmPayment(id, "no-such-id"), "not_found");
      const a = await audit(id);
      assert.deepEqual([a.stock, a.reserved, a.paid], [3, 0, 1]);
      assert.equal(a.users.has("e"), false, "a user holding nothing is dropped from the hash");
      const record = await store.getReservation(id, r1.orderId);
      assert.equal(record?.status, "RELEASED");
      assert.equal((await store.getReservation(id, r2.orderId))?.status, "PAID");
      const deadline = Date.now() + 2000;
      while (messages.length === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(messages, ["3"], "one restock message, for the one release");
      // A retry of the released reservation's request replays it; it does not reserve again.
      const retry = await reserve(
        item(id, { userId: "e", quantity: 2, requestId: record!.requestId }),
      );
      assert.deepEqual(
        [retry.result, retry.orderId, retry.replayed],
        [BuyResult.RESERVED, r1.orderId, true],
      );
      assert.equal((await audit(id)).stock, 3);
    } finally {
      sub.disconnect();
    }
  });

  it("warms up once: later calls keep the counters, apply newer revisions, ignore older ones", async () => {
    const id = fresh();
    const first = await store.warmUp(definition({ id, totalStock: 5, revision: 3 }), {
      create: true,
    });
    assert.deepEqual(first, {
      alreadyWarm: false,
      applied: true,
      remaining: 5,
      revision: 3,
      total: 5,
    });
    const groups = (await redis.xinfo("GROUPS", activityKeys(id).orders)) as unknown[][];
    assert.equal(groups[0]?.[1], "order", "the stream exists with the order consumer group");
    await reserve(item(id));
    const again = await store.warmUp(definition({ id, totalStock: 50, revision: 3 }), {
      create: true,
    });
    assert.deepEqual(again, {
      alreadyWarm: true,
      applied: true,
      remaining: 4,
      revision: 3,
      total: 5,
    });
    const stale = await store.warmUp(definition({ id, perUserLimit: 9, revision: 2 }), {
      create: true,
    });
    assert.deepEqual(stale, {
      alreadyWarm: true,
      applied: false,
      remaining: 4,
      revision: 3,
      total: 5,
    });
    assert.equal(await redis.hget(activityKeys(id).meta, "limit"), "2");
    const newer = await store.warmUp(
      definition({ id, perUserLimit: 1, status: "ENDED", revision: 4 }),
      {
        create: false,
      },
    );
    assert.equal(newer.applied, true);
    assert.deepEqual(
      await redis.hmget(activityKeys(id).meta, "limit", "status", "revision", "total"),
      ["1", "ENDED", "4", "5"],
    );
    assert.equal((await reserve(item(id, { userId: "z" }))).result, BuyResult.ENDED);
    await audit(id);
    // Without `create`, an activity that is not in Redis stays absent.
    const absent = fresh();
    assert.deepEqual(await store.warmUp(definition({ id: absent }), { create: false }), {
      alreadyWarm: false,
      applied: false,
      remaining: 0,
      revision: -1,
      total: 0,
    });
    assert.deepEqual(await snapshotRedis(redis, `{act:${absent}}*`), {});
  });

  it("refuses to warm up again over stock whose meta is gone", async () => {
    const id = fresh();
    await warm(id);
    await redis.del(activityKeys(id).meta);
    await assert.rejects(warm(id), /stock exists without its meta/);
  });

  it("keeps conservation (I5) after a mix of everything", async () => {
    const id = fresh();
    await warm(id, { totalStock: 20, perUserLimit: 3 });
    const ids: string[] = [];
    for (let round = 0; round < 5; round++) {
      const results = await store.reserveBatch(
        Array.from({ length: 8 }, (_, i) =>
          item(id, {
            userId: `u${(round * 3 + i) % 7}`,
            quantity: 1 + (i % 3),
            requestId: `m${round}-${i % 6}`,
          }),
        ),
      );
      for (const r of results)
        if (r.result === BuyResult.RESERVED && !r.replayed) ids.push(r.orderId);
      if (ids.length > 2) {
        await store.confirmPayment(id, ids[ids.length - 1]!);
        await store.release(id, ids[ids.length - 2]!, "test");
        await store.release(id, ids[0]!, "test");
      }
      await audit(id);
    }
    const stock = await store.getStock(id);
    assert.equal(stock!.remaining + stock!.reserved + stock!.paid, stock!.total);
    assert.equal(await store.getStock(fresh()), undefined);
  });
});
