/**
 * A burst of buyers, with retries and repeat buyers mixed in, through the mesh
 * client and the batching helper against two core instances sharing one
 * Redis: exactly `STOCK` units are reserved, once each.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { type ReserveOutcome, SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import { Mesh } from "../../shared/src/mesh/mesh.ts";
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";
import { type RunningService, startService } from "../../shared/src/runtime/server.ts";
import { startTelemetry } from "../../shared/src/runtime/telemetry.ts";
import {
  type EtcdServer,
  type RedisServer,
  startEtcd,
  startRedis,
} from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import { activityFixture } from "../../shared/src/testing/fixtures.ts";
import { metricValue } from "../../shared/src/testing/metrics.ts";
import { auditActivity } from "../../shared/src/testing/redis-state.ts";
import { createReserver } from "./client.ts";
import { coreConfigSchema } from "./config.ts";
import { coreService, SERVICE_NAME } from "./service.ts";

const BUYERS = Number(process.env.CORE_TEST_BUYERS ?? 5000);
const STOCK = Number(process.env.CORE_TEST_STOCK ?? 500);
const CONCURRENCY = 1000;

/** A small deterministic PRNG, so a failing run can be repeated. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("a burst of buyers against two core instances", () => {
  let redisServer: RedisServer;
  let etcdServer: EtcdServer;
  let redis: Redis;
  let etcd: Etcd3;
  let mesh: Mesh;
  const cores: RunningService[] = [];

  before(async () => {
    [redisServer, etcdServer] = await Promise.all([startRedis(), startEtcd()]);
    redis = new Redis(redisServer.url);
    etcd = createEtcd(etcdServer.endpoints);
    for (const instance of ["core-a", "core-b"]) {
      cores.push(
        await startService(
          coreService(
            loadConfig(coreConfigSchema, {
              REDIS_URL: redisServer.url,
              ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
              INSTANCE_ID: instance,
              LOG_LEVEL: "silent",
              SHUTDOWN_DELAY_MS: "0",
            }),
          ),
        ),
      );
    }
    const log = createLogger("concurrency-test", "silent");
    const { tracer } = startTelemetry({
      service: "concurrency-test",
      instance: "test",
      version: "test",
      exporter: "none",
    });
    mesh = new Mesh({ etcd, log, tracer });
    await mesh.ready(SERVICE_NAME);
  });
  after(async () => {
    await mesh?.close();
    await Promise.all(cores.map((c) => c.shutdown("test done")));
    redis?.disconnect();
    etcd?.close();
    await Promise.all([redisServer?.stop(), etcdServer?.stop()]);
  });

  it(`${BUYERS} buyers with retries against stock ${STOCK}: exactly ${STOCK} reserved, once each`, async () => {
    const client = mesh.client(SeckillCoreService, SERVICE_NAME);
    const reserve = createReserver(client, {
      maxBatch: 256,
      maxDelayMs: 1,
      timeoutMs: 3_000,
      name: "reserve-concurrency-test",
    });
    const id = "burst";
    await client.warmUp({ activity: activityFixture({ id, totalStock: STOCK, perUserLimit: 1 }) });

    const random = prng(42);
    const answers = new Map<string, ReserveOutcome[]>();
    const record = (requestId: string, outcome: ReserveOutcome) => {
      const list = answers.get(requestId);
      if (list) list.push(outcome);
      else answers.set(requestId, [outcome]);
    };
    let calls = 0;
    const send = async (userId: string, requestId: string) => {
      calls++;
      record(requestId, await reserve({ activityId: id, userId, quantity: 1, requestId }));
    };
    const buyer = async (i: number) => {
      const userId = `user-${i}`;
      const requestId = `buy-${i}`;
      const roll = random();
      // 20%: the request is sent twice at once (a client retry racing the original).
      if (roll < 0.2) await Promise.all([send(userId, requestId), send(userId, requestId)]);
      else await send(userId, requestId);
      // 10%: retried after the answer; 10%: the buyer clicks again (a new request id).
      if (random() < 0.1) await send(userId, requestId);
      if (random() < 0.1) await send(userId, `buy-${i}-again`);
    };

    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < BUYERS) await buyer(next++);
      }),
    );
    const seconds = (performance.now() - started) / 1000;

    const fresh = new Set<string>();
    const byResult = new Map<string, number>();
    for (const [requestId, outcomes] of answers) {
      const reserved = outcomes.filter((o) => o.result === BuyResult.RESERVED);
      const orderIds = new Set(reserved.map((o) => o.orderId));
      assert.ok(orderIds.size <= 1, `${requestId} got ${orderIds.size} different order ids`);
      const originals = reserved.filter((o) => !o.replayed);
      assert.ok(originals.length <= 1, `${requestId} reserved ${originals.length} times`);
      // No stock comes back in this test: once a request id reserved, every answer to it is that.
      if (reserved.length > 0)
        assert.equal(reserved.length, outcomes.length, `${requestId}: answered RESERVED and not`);
      for (const o of originals) fresh.add(o.orderId);
      for (const o of outcomes) {
        const label = BuyResult[o.result] + (o.replayed ? " (replayed)" : "");
        byResult.set(label, (byResult.get(label) ?? 0) + 1);
      }
    }
    assert.equal(fresh.size, STOCK, "reservations acknowledged");

    const audit = await auditActivity(redis, id);
    assert.deepEqual(audit.violations, []);
    assert.equal(audit.reservations.size, STOCK);
    assert.equal(await redis.xlen(activityKeys(id).orders), STOCK, "order intents on the stream");
    assert.deepEqual(
      [audit.stock, audit.reserved, audit.paid, audit.total],
      [0, STOCK, 0, STOCK],
      "I5: remaining + reserved + paid == total",
    );
    assert.ok(
      [...audit.users.values()].every((units) => units === 1),
      "I3: one unit per buyer",
    );
    assert.deepEqual(
      new Set(audit.reservations.keys()),
      fresh,
      "Redis holds exactly the acknowledged ones",
    );

    const stock = await client.getStock({ activityId: id });
    assert.equal(stock.soldOut, true);
    const batcher = { batcher: "reserve-concurrency-test" };
    const sum = await metricValue(metricsRegistry, "seckill_batch_size_sum", batcher);
    const count = await metricValue(metricsRegistry, "seckill_batch_size_count", batcher);
    const shortCircuits = await metricValue(
      metricsRegistry,
      "seckill_core_sold_out_short_circuits_total",
    );
    console.log(
      `burst: ${BUYERS} buyers, ${calls} Reserve calls in ${count} batched RPCs (mean batch ${(sum / Math.max(1, count)).toFixed(1)}) ` +
        `over 2 cores in ${seconds.toFixed(2)} s (${Math.round(calls / seconds)} calls/s); ` +
        `${shortCircuits} answered from sold-out flags; answers ${JSON.stringify(Object.fromEntries(byResult))}`,
    );
  });
});
