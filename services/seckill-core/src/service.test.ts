/**
 * SeckillCoreService through gRPC, served in-process by startService on a
 * real redis-server and etcd: request checks, the per-item outcomes, the
 * sold-out flags with restock, and activity changes made in etcd.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { ReservationStatus, SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";
import { type RunningService, startService } from "../../shared/src/runtime/server.ts";
import { activityKey, encodeActivity } from "../../shared/src/sale/activities.ts";
import {
  type EtcdServer,
  type RedisServer,
  startEtcd,
  startRedis,
} from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import {
  activityFixture,
  auditActivity,
  codeIs,
  metricValue,
  pollUntil,
  snapshotRedis,
} from "../../shared/src/testing/index.ts";
import { createGrpcTransport, type GrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import { type CoreClient, createReserver } from "./client.ts";
import { coreConfigSchema } from "./config.ts";
import { coreService } from "./service.ts";

const MAX_BATCH = 16;

describe("seckill-core over gRPC", () => {
  let redisServer: RedisServer;
  let etcdServer: EtcdServer;
  let redis: Redis;
  let etcd: Etcd3;
  let core: RunningService;
  let transport: GrpcTransport;
  let client: CoreClient;
  let n = 0;
  const rid = () => `rq-${++n}`;

  before(async () => {
    [redisServer, etcdServer] = await Promise.all([startRedis(), startEtcd()]);
    redis = new Redis(redisServer.url);
    etcd = createEtcd(etcdServer.endpoints);
    core = await startService(
      coreService(
        loadConfig(coreConfigSchema, {
          REDIS_URL: redisServer.url,
          ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
          INSTANCE_ID: "core-test",
          LOG_LEVEL: "silent",
          SHUTDOWN_DELAY_MS: "0",
          MAX_BATCH: String(MAX_BATCH),
          // Long enough that only a restock message can clear a flag within a test.
          SOLD_OUT_CACHE_MS: "60000",
        }),
      ),
    );
    transport = createGrpcTransport({ address: `127.0.0.1:${core.port}` });
    client = createClient(SeckillCoreService, transport);
  });
  after(async () => {
    transport?.close();
    await core?.shutdown("test done");
    redis?.disconnect();
    etcd?.close();
    await Promise.all([redisServer?.stop(), etcdServer?.stop()]);
  });

  it("runs the whole life of a reservation", async () => {
    const warm = await client.warmUp({ activity: activityFixture({ id: "life", totalStock: 3 }) });
    assert.deepEqual([warm.remaining, warm.alreadyWarm], [3n, false]);
    const again = await client.warmUp({ activity: activityFixture({ id: "life", totalStock: 3 }) });
    assert.deepEqual([again.remaining, again.alreadyWarm], [3n, true]);

    const { outcomes } = await client.reserve({
      items: [
        { activityId: "life", userId: "u1", quantity: 2, requestId: "life-1" },
        { activityId: "life", userId: "u2", quantity: 1, requestId: "life-2" },
      ],
    });
    const [first, second] = outcomes;
    assert.equal(first!.result, BuyResult.RESERVED);
    assert.equal(first!.orderId, first!.reservationId);
    assert.ok(first!.paymentDeadline, "a reservation has a payment deadline");
    assert.deepEqual([second!.remaining, second!.soldOut], [0n, true]);

    const byOrder = await client.getReservation({ activityId: "life", orderId: first!.orderId });
    const byId = await client.getReservation({
      activityId: "life",
      reservationId: first!.orderId,
    });
    assert.deepEqual(byOrder.reservation, byId.reservation);
    assert.equal(byId.reservation?.userId, "u1");
    assert.equal(byId.reservation?.quantity, 2);
    assert.equal(byId.reservation?.requestId, "life-1");
    assert.equal(byId.reservation?.status, ReservationStatus.RESERVED);

    assert.equal(
      (await client.confirmPayment({ activityId: "life", reservationId: first!.orderId }))
        .confirmed,
      true,
    );
    assert.equal(
      (await client.confirmPayment({ activityId: "life", reservationId: first!.orderId }))
        .confirmed,
      true,
    );
    const paidRelease = await client.release({
      activityId: "life",
      reservationId: first!.orderId,
      reason: "admin",
    });
    assert.equal(paidRelease.released, false, "a paid reservation keeps its stock");

    const released = await client.release({
      activityId: "life",
      reservationId: second!.orderId,
      reason: "payment_timeout",
    });
    assert.deepEqual([released.released, released.remaining], [true, 1n]);
    const twice = await client.release({
      activityId: "life",
      reservationId: second!.orderId,
      reason: "payment_timeout",
    });
    assert.deepEqual([twice.released, twice.remaining], [false, 1n]);
    assert.equal(
      (await client.confirmPayment({ activityId: "life", reservationId: second!.orderId }))
        .confirmed,
      false,
    );

    const stock = await client.getStock({ activityId: "life" });
    assert.deepEqual(
      [stock.total, stock.remaining, stock.reserved, stock.paid, stock.soldOut],
      [3n, 1n, 0n, 2n, false],
    );
    assert.deepEqual((await auditActivity(redis, "life")).violations, []);
  });

  it("refuses malformed calls with INVALID_ARGUMENT / FAILED_PRECONDITION / NOT_FOUND and changes nothing", async () => {
    await client.warmUp({
      activity: activityFixture({ id: "bad", totalStock: 5, perUserLimit: 2 }),
    });
    const held = await client.reserve({
      items: [{ activityId: "bad", userId: "u", quantity: 1, requestId: rid() }],
    });
    const orderId = held.outcomes[0]!.orderId;
    const before = await snapshotRedis(redis);
    const ok = { activityId: "bad", userId: "v", quantity: 1, requestId: rid() };

    await assert.rejects(client.reserve({ items: [] }), codeIs(Code.InvalidArgument));
    await assert.rejects(
      client.reserve({
        items: Array.from({ length: MAX_BATCH + 1 }, () => ({ ...ok, requestId: rid() })),
      }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.reserve({ items: [ok, { ...ok, requestId: "" }] }),
      (err: ConnectError) => {
        assert.equal(err.code, Code.InvalidArgument);
        assert.match(err.message, /items\[1\]: request_id is required/);
        return true;
      },
    );
    await assert.rejects(
      client.reserve({ items: [{ ...ok, userId: "" }] }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.reserve({ items: [{ ...ok, activityId: "" }] }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.reserve({ items: [{ ...ok, requestId: "x".repeat(300) }] }),
      codeIs(Code.InvalidArgument),
    );

    // Per-item refusals are outcomes, and change nothing either.
    const { outcomes } = await client.reserve({
      items: [
        { activityId: "no-such-activity", userId: "v", quantity: 1, requestId: rid() },
        { ...ok, quantity: 0, requestId: rid() },
        { ...ok, quantity: -2, requestId: rid() },
        { ...ok, quantity: 3, requestId: rid() },
      ],
    });
    assert.deepEqual(
      outcomes.map((o) => [BuyResult[o.result], o.orderId, o.soldOut]),
      [
        ["NOT_FOUND", "", false],
        ["INVALID_QUANTITY", "", false],
        ["INVALID_QUANTITY", "", false],
        ["INVALID_QUANTITY", "", false],
      ],
    );

    await assert.rejects(
      client.release({ activityId: "bad", reservationId: "" }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.release({ activityId: "", reservationId: orderId }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.release({ activityId: "bad", reservationId: "nope" }),
      codeIs(Code.NotFound),
    );
    await assert.rejects(
      client.release({ activityId: "nope", reservationId: orderId }),
      codeIs(Code.NotFound),
    );
    await assert.rejects(
      client.confirmPayment({ activityId: "bad", reservationId: "nope" }),
      codeIs(Code.NotFound),
    );
    await assert.rejects(
      client.confirmPayment({ activityId: "nope", reservationId: orderId }),
      codeIs(Code.NotFound),
    );
    await assert.rejects(client.getStock({ activityId: "nope" }), codeIs(Code.NotFound));
    await assert.rejects(client.getStock({ activityId: "" }), codeIs(Code.InvalidArgument));
    await assert.rejects(
      client.getReservation({ activityId: "bad" }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.getReservation({ activityId: "bad", reservationId: orderId, orderId: "other" }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.getReservation({ activityId: "bad", orderId: "nope" }),
      codeIs(Code.NotFound),
    );
    await assert.rejects(client.warmUp({}), codeIs(Code.InvalidArgument));
    await assert.rejects(
      client.warmUp({ activity: activityFixture({ id: "" }) }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.warmUp({ activity: activityFixture({ id: "w", perUserLimit: 0 }) }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.warmUp({ activity: activityFixture({ id: "w", totalStock: -1 }) }),
      codeIs(Code.InvalidArgument),
    );
    const now = Date.now();
    await assert.rejects(
      client.warmUp({ activity: activityFixture({ id: "w", startMs: now, endMs: now - 1 }) }),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      client.warmUp({ activity: activityFixture({ id: "w", status: 1 /* DRAFT */ }) }),
      codeIs(Code.FailedPrecondition),
    );

    assert.deepEqual(await snapshotRedis(redis), before, "no key changed");
  });

  it("refuses a malformed item in the batching client alone, without failing its batch", async () => {
    await client.warmUp({ activity: activityFixture({ id: "mixed", totalStock: 5 }) });
    const reserve = createReserver(client, { maxBatch: MAX_BATCH, maxDelayMs: 5 });
    const [good, bad] = await Promise.allSettled([
      reserve({ activityId: "mixed", userId: "u", quantity: 1, requestId: rid() }),
      reserve({ activityId: "mixed", userId: "u", quantity: 1, requestId: "" }),
    ]);
    assert.equal(good.status === "fulfilled" && good.value.result, BuyResult.RESERVED);
    assert.equal(
      bad.status === "rejected" && (bad.reason as ConnectError).code,
      Code.InvalidArgument,
    );
  });

  it("answers later buyers from the sold-out flag, still replays winners, and lifts the flag on restock", async () => {
    await client.warmUp({
      activity: activityFixture({ id: "flag", totalStock: 2, perUserLimit: 1 }),
    });
    const first = await client.reserve({
      items: [
        { activityId: "flag", userId: "a", quantity: 1, requestId: "flag-a" },
        { activityId: "flag", userId: "b", quantity: 1, requestId: "flag-b" },
      ],
    });
    assert.equal(first.outcomes[1]!.soldOut, true);
    const shortCircuits = await metricValue(
      metricsRegistry,
      "seckill_core_sold_out_short_circuits_total",
    );
    const later = await client.reserve({
      items: [
        { activityId: "flag", userId: "c", quantity: 1, requestId: "flag-c" },
        { activityId: "flag", userId: "a", quantity: 1, requestId: "flag-a" }, // a retry
      ],
    });
    assert.deepEqual(
      later.outcomes.map((o) => [BuyResult[o.result], o.orderId, o.replayed, o.soldOut]),
      [
        ["SOLD_OUT", "", false, true],
        ["RESERVED", first.outcomes[0]!.orderId, true, true],
      ],
    );
    assert.equal(
      await metricValue(metricsRegistry, "seckill_core_sold_out_short_circuits_total"),
      shortCircuits + 2,
      "answered without the script",
    );

    const restocks = await metricValue(metricsRegistry, "seckill_core_restock_messages_total");
    await client.release({
      activityId: "flag",
      reservationId: first.outcomes[1]!.orderId,
      reason: "user_cancelled",
    });
    const tookMs = await pollUntil(
      async () => {
        const { outcomes } = await client.reserve({
          items: [{ activityId: "flag", userId: "c", quantity: 1, requestId: "flag-c" }],
        });
        return outcomes[0]!.result === BuyResult.RESERVED;
      },
      { timeoutMs: 5000, message: "restock clears the flag" },
    );
    assert.ok(
      (await metricValue(metricsRegistry, "seckill_core_restock_messages_total")) > restocks,
    );
    console.log(
      `sold-out flag lifted by the restock message ${tookMs.toFixed(1)} ms after Release`,
    );
    assert.deepEqual((await auditActivity(redis, "flag")).violations, []);
  });

  it("enforces a per-user limit or end time changed in etcd, and ignores an older revision", async () => {
    const id = "etcd-change";
    await client.warmUp({
      activity: activityFixture({ id, totalStock: 10_000, perUserLimit: 3, revision: 1 }),
    });
    let buyer = 0;
    const probe = async (quantity: number) =>
      (
        await client.reserve({
          items: [{ activityId: id, userId: `p${++buyer}`, quantity, requestId: rid() }],
        })
      ).outcomes[0]!.result;
    assert.equal(await probe(2), BuyResult.RESERVED);

    await etcd
      .put(activityKey(id))
      .value(
        encodeActivity(activityFixture({ id, totalStock: 10_000, perUserLimit: 1, revision: 2 })),
      );
    const limitMs = await pollUntil(async () => (await probe(2)) === BuyResult.INVALID_QUANTITY, {
      timeoutMs: 5000,
      message: "lower per-user limit enforced",
    });

    const endMs = Date.now() - 1000;
    await etcd.put(activityKey(id)).value(
      encodeActivity(
        activityFixture({
          id,
          totalStock: 10_000,
          perUserLimit: 1,
          revision: 3,
          startMs: endMs - 3_600_000,
          endMs,
        }),
      ),
    );
    const endedMs = await pollUntil(async () => (await probe(1)) === BuyResult.ENDED, {
      timeoutMs: 5000,
      message: "earlier end enforced",
    });
    console.log(
      `etcd change enforced by core: per-user limit after ${limitMs.toFixed(1)} ms, end time after ${endedMs.toFixed(1)} ms`,
    );
    assert.ok(limitMs < 5000 && endedMs < 5000);

    const stale = await metricValue(metricsRegistry, "seckill_core_warm_ups_total", {
      source: "catalog",
      outcome: "stale",
    });
    await etcd
      .put(activityKey(id))
      .value(encodeActivity(activityFixture({ id, perUserLimit: 5, revision: 2 })));
    await pollUntil(
      async () =>
        (await metricValue(metricsRegistry, "seckill_core_warm_ups_total", {
          source: "catalog",
          outcome: "stale",
        })) > stale,
      { timeoutMs: 5000, message: "stale revision seen" },
    );
    assert.deepEqual(await redis.hmget(activityKeys(id).meta, "limit", "revision", "end_ms"), [
      "1",
      "3",
      String(endMs),
    ]);

    // The catalog updates warmed activities only: it never creates stock.
    const notWarm = await metricValue(metricsRegistry, "seckill_core_warm_ups_total", {
      source: "catalog",
      outcome: "not_warm",
    });
    await etcd
      .put(activityKey("only-in-etcd"))
      .value(encodeActivity(activityFixture({ id: "only-in-etcd" })));
    await pollUntil(
      async () =>
        (await metricValue(metricsRegistry, "seckill_core_warm_ups_total", {
          source: "catalog",
          outcome: "not_warm",
        })) > notWarm,
      { timeoutMs: 5000, message: "definition seen" },
    );
    await assert.rejects(client.getStock({ activityId: "only-in-etcd" }), codeIs(Code.NotFound));
  });
});
