/**
 * The gateway in process on real sockets, over a real etcd and Redis, with
 * fake upstream services served by grpc-js and registered in etcd like the
 * real ones: every protocol on both listeners, CORS, health, metrics, the
 * blacklist and restock messages through Redis, one trace across the hop,
 * and the graceful shutdown.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Code,
  ConnectError,
  createClient,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import { BuyResult, OrderStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { GatewayService } from "../../gen/seckill/gateway/v1/gateway_pb.ts";
import { OrderService } from "../../gen/seckill/order/v1/order_pb.ts";
import { servicePrefix } from "../../shared/src/mesh/registry.ts";
import { baseConfigSchema, loadConfig } from "../../shared/src/runtime/config.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { type RunningService, startService } from "../../shared/src/runtime/server.ts";
import { startTelemetry } from "../../shared/src/runtime/telemetry.ts";
import { putBlacklistEntry, removeBlacklistEntry } from "../../shared/src/sale/blacklist.ts";
import {
  type EtcdServer,
  type RedisServer,
  startEtcd,
  startRedis,
} from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import { createRedis, type Redis } from "../../shared/src/stores/redis.ts";
import { createGrpcTransport as createMeshGrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import { Health, ServingStatus } from "../../shared/src/transport/health.ts";
import { requireCaller } from "../../shared/src/transport/identity.ts";
import { gatewayConfigSchema } from "./config.ts";
import { type RunningEdge, startEdgeService } from "./edge-server.ts";
import { gatewaySpec } from "./service.ts";
import { bearer, signing, tokens } from "./testing/fakes.ts";

const spans = new InMemorySpanExporter();
startTelemetry({
  service: "edge-test",
  instance: "test",
  version: "test",
  exporter: "none",
  extraExporter: spans,
});

let etcdServer: EtcdServer;
let redisServer: RedisServer;
let etcd: Etcd3;
let redis: Redis;
let gateway: RunningEdge;
const upstreams: RunningService[] = [];
const log = createLogger("edge-test", "silent");

const ORIGIN = "https://shop.example";

function env(extra: Record<string, string> = {}) {
  return {
    ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
    REDIS_URL: redisServer.url,
    LOG_LEVEL: "silent",
    REGISTRATION_TTL_SECONDS: "3",
    SHUTDOWN_DELAY_MS: "300",
    ...extra,
  };
}

async function upstream(name: string, routes: Parameters<typeof startService>[0]["setup"]) {
  const service = await startService({
    name,
    config: loadConfig(baseConfigSchema, env({ INSTANCE_ID: `${name}-1` })),
    setup: routes,
  });
  upstreams.push(service);
}

before(async () => {
  [etcdServer, redisServer] = await Promise.all([startEtcd(), startRedis()]);
  etcd = createEtcd(etcdServer.endpoints);
  redis = createRedis(redisServer.url, log);
  await upstream(
    "auth",
    () => (router) =>
      router.service(AuthService, {
        getPublicKeys: () => ({ keys: [signing.key.publicJwk] }),
      }),
  );
  await upstream(
    "seckill-app",
    () => (router) =>
      router.service(SeckillAppService, {
        getServerTime: () => ({ unixMillis: BigInt(Date.now()) }),
        async buy(req, ctx: HandlerContext) {
          const caller = requireCaller(ctx);
          if (req.activityId === "slow") await sleep(600);
          if (req.activityId === "sold") return { result: BuyResult.SOLD_OUT, soldOut: true };
          // The message tells the test which client address the app was given.
          return { result: BuyResult.RESERVED, orderId: `o-${req.requestId}`, message: caller.ip };
        },
      }),
  );
  await upstream(
    "order",
    () => (router) =>
      router.service(OrderService, {
        async *watchOrder(req, ctx) {
          yield { order: { id: req.orderId, status: OrderStatus.CREATING } };
          await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
        },
      }),
  );
  gateway = await startEdgeService(
    gatewaySpec(
      loadConfig(
        gatewayConfigSchema,
        env({
          INSTANCE_ID: "gateway-1",
          CORS_ALLOWED_ORIGINS: ORIGIN,
          TRUSTED_PROXY_HOPS: "1",
          RATE_LIMIT_IP_RPS: "50",
          RATE_LIMIT_IP_BURST: "50",
          SOLD_OUT_TTL_MS: "60000",
        }),
      ),
    ),
  );
});

after(async () => {
  await gateway?.shutdown("test over");
  for (const s of upstreams) await s.shutdown();
  await redis?.quit();
  etcd?.close();
  await Promise.all([etcdServer?.stop(), redisServer?.stop()]);
});

const h2 = () => `http://127.0.0.1:${gateway.port}`;
const h1 = () => `http://127.0.0.1:${gateway.http1Port}`;

function transports(): Record<string, Transport> {
  return {
    "connect over h2c": createConnectTransport({ baseUrl: h2(), httpVersion: "2" }),
    "gRPC over h2c": createGrpcTransport({ baseUrl: h2() }),
    "gRPC-Web over h2c": createGrpcWebTransport({ baseUrl: h2(), httpVersion: "2" }),
    "connect over HTTP/1.1": createConnectTransport({ baseUrl: h1(), httpVersion: "1.1" }),
    "gRPC-Web over HTTP/1.1": createGrpcWebTransport({ baseUrl: h1(), httpVersion: "1.1" }),
  };
}

/** A raw HTTP/1.1 request, for CORS. */
function rawRequest(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: gateway.http1Port, method, path, headers },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("the edge on real sockets", () => {
  it("speaks Connect, gRPC and gRPC-Web on the h2c port and Connect, gRPC-Web on HTTP/1.1", async () => {
    const token = await tokens.user("u-proto");
    let n = 0;
    for (const [name, transport] of Object.entries(transports())) {
      const app = createClient(SeckillAppService, transport);
      const time = await app.getServerTime({});
      assert.ok(Math.abs(Number(time.unixMillis) - Date.now()) < 5000, name);
      const res = await app.buy(
        { activityId: "a", quantity: 1, buyToken: "t", requestId: `r-${n++}` },
        { headers: bearer(token) },
      );
      assert.equal(res.result, BuyResult.RESERVED, name);
      assert.equal(res.message, "127.0.0.1", `${name}: the peer address is the client's`);
      await assert.rejects(app.buy({ activityId: "a" }), (err: ConnectError) => {
        assert.equal(err.code, Code.Unauthenticated, name);
        return true;
      });
    }
  });

  it("takes the client address from X-Forwarded-For only as far as proxies are trusted", async () => {
    const app = createClient(
      SeckillAppService,
      createConnectTransport({ baseUrl: h2(), httpVersion: "2" }),
    );
    const res = await app.buy(
      { activityId: "a", quantity: 1, buyToken: "t", requestId: "xff-1" },
      {
        headers: {
          ...bearer(await tokens.user()),
          "x-forwarded-for": "6.6.6.6, 203.0.113.5",
          "x-seckill-client-ip": "1.2.3.4",
        },
      },
    );
    assert.equal(res.message, "203.0.113.5", "one trusted hop: the address it appended");
  });

  it("serves grpc-js clients and grpc.health.v1", async () => {
    const transport = createMeshGrpcTransport({ address: `127.0.0.1:${gateway.port}` });
    try {
      const health = createClient(Health, transport);
      assert.equal((await health.check({ service: "" })).status, ServingStatus.SERVING);
      assert.equal(
        (await health.check({ service: SeckillAppService.typeName })).status,
        ServingStatus.SERVING,
      );
      const status = await createClient(GatewayService, transport).getEdgeStatus({});
      assert.equal(status.instanceId, "gateway-1");
    } finally {
      transport.close();
    }
  });

  it("answers CORS preflights for allowed origins only and exposes connect's headers", async () => {
    const path = `/${SeckillAppService.typeName}/GetServerTime`;
    const preflight = await rawRequest("OPTIONS", path, {
      origin: ORIGIN,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,authorization,connect-protocol-version",
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers["access-control-allow-origin"], ORIGIN);
    assert.match(String(preflight.headers["access-control-allow-headers"]), /Authorization/i);
    assert.match(
      String(preflight.headers["access-control-allow-headers"]),
      /Connect-Protocol-Version/i,
    );
    assert.match(String(preflight.headers["access-control-allow-methods"]), /POST/);

    const denied = await rawRequest("OPTIONS", path, {
      origin: "https://evil.example",
      "access-control-request-method": "POST",
    });
    assert.equal(denied.status, 403);
    assert.equal(denied.headers["access-control-allow-origin"], undefined);

    const call = await rawRequest(
      "POST",
      path,
      { origin: ORIGIN, "content-type": "application/json", "connect-protocol-version": "1" },
      "{}",
    );
    assert.equal(call.status, 200);
    assert.equal(call.headers["access-control-allow-origin"], ORIGIN);
    assert.match(String(call.headers["access-control-expose-headers"]), /Grpc-Status/i);
    assert.match(String(call.headers["access-control-expose-headers"]), /retry-after-ms/i);
  });

  it("forwards WatchOrder as a stream and counts refusals in /metrics", async () => {
    const order = createClient(
      OrderService,
      createConnectTransport({ baseUrl: h1(), httpVersion: "1.1" }),
    );
    const abort = new AbortController();
    for await (const m of order.watchOrder(
      { orderId: "o-1" },
      { headers: bearer(await tokens.user()), signal: abort.signal },
    )) {
      assert.equal(m.order?.status, OrderStatus.CREATING);
      abort.abort();
      break;
    }
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.metricsPort}/metrics`)).text();
    assert.match(
      metrics,
      /seckill_gateway_refusals_total\{reason="unauthenticated",service="seckill.app.v1.SeckillAppService"\} [1-9]/,
    );
    assert.match(
      metrics,
      /seckill_rpc_server_duration_seconds_count\{service="seckill.app.v1.SeckillAppService",method="Buy",code="ok"\}/,
    );
  });

  it("blocks a blacklisted IP within a second, and lets it in again when removed", async () => {
    const app = createClient(
      SeckillAppService,
      createConnectTransport({ baseUrl: h2(), httpVersion: "2" }),
    );
    const from = { headers: { "x-forwarded-for": "198.51.100.77" } };
    await app.getServerTime({}, from);
    await putBlacklistEntry(redis, "ip", "198.51.100.77", { reason: "test", expiresAtMs: 0 });
    const started = Date.now();
    let code: Code | undefined;
    while (Date.now() - started < 2000) {
      code = await app.getServerTime({}, from).then(
        () => undefined,
        (err: ConnectError) => err.code,
      );
      if (code !== undefined) break;
      await sleep(20);
    }
    console.log(`IP blacklist effective after ${Date.now() - started} ms`);
    assert.equal(code, Code.PermissionDenied);
    await removeBlacklistEntry(redis, "ip", "198.51.100.77");
    for (let i = 0; i < 100; i++) {
      if (
        await app.getServerTime({}, from).then(
          () => true,
          () => false,
        )
      )
        return;
      await sleep(20);
    }
    assert.fail("still blocked after removal");
  });

  it("short-circuits Buy for a sold-out activity until core's restock message", async () => {
    const transport = createConnectTransport({ baseUrl: h2(), httpVersion: "2" });
    const app = createClient(SeckillAppService, transport);
    const gw = createClient(GatewayService, transport);
    const headers = bearer(await tokens.user());
    const first = await app.buy(
      { activityId: "sold", quantity: 1, buyToken: "t", requestId: "s1" },
      { headers },
    );
    assert.equal(first.result, BuyResult.SOLD_OUT);
    assert.deepEqual((await gw.getEdgeStatus({})).soldOutActivityIds, ["sold"]);
    const second = await app.buy(
      { activityId: "sold", quantity: 1, buyToken: "t", requestId: "s2" },
      { headers },
    );
    assert.equal(second.message, "sold out (answered by the gateway)");
    await redis.publish("{act:sold}:restock", "1");
    for (let i = 0; i < 100 && (await gw.getEdgeStatus({})).soldOutActivityIds.length > 0; i++) {
      await sleep(10);
    }
    assert.deepEqual((await gw.getEdgeStatus({})).soldOutActivityIds, []);
  });

  it("continues the client's trace: the edge's server span is the parent of the app's", async () => {
    spans.reset();
    const app = createClient(
      SeckillAppService,
      createConnectTransport({ baseUrl: h2(), httpVersion: "2" }),
    );
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    await app.buy(
      { activityId: "a", quantity: 1, buyToken: "t", requestId: "trace-1" },
      {
        headers: {
          ...bearer(await tokens.user()),
          traceparent: `00-${traceId}-b7ad6b7169203331-01`,
        },
      },
    );
    const buySpans = spans
      .getFinishedSpans()
      .filter(
        (s) =>
          s.name === `${SeckillAppService.typeName}/Buy` && s.spanContext().traceId === traceId,
      );
    // edge server, mesh client, app server
    assert.equal(buySpans.length, 3, buySpans.map((s) => s.kind).join());
  });

  it("drains on shutdown: NOT_SERVING, deregistered, in-flight calls finish, streams end UNAVAILABLE", async () => {
    const transport = createConnectTransport({ baseUrl: h2(), httpVersion: "2" });
    const app = createClient(SeckillAppService, transport);
    const order = createClient(OrderService, transport);
    const headers = bearer(await tokens.user());
    const streamEnd = (async () => {
      for await (const _ of order.watchOrder({ orderId: "o-9" }, { headers })) {
        // first message; then wait for the end
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    await sleep(100);
    const slow = app.buy(
      { activityId: "slow", quantity: 1, buyToken: "t", requestId: "slow-1" },
      { headers },
    );
    await sleep(50);
    const stopping = gateway.shutdown("test");
    await sleep(50);
    assert.equal(gateway.health.get(), ServingStatus.NOT_SERVING);
    const registered = await etcd.getAll().prefix(servicePrefix("gateway")).keys();
    assert.deepEqual(registered, []);
    const res = await slow;
    assert.equal(res.result, BuyResult.RESERVED, "the in-flight call finished");
    const ended = await streamEnd;
    assert.ok(ended instanceof ConnectError, String(ended));
    assert.equal(ended.code, Code.Unavailable);
    await stopping;
    await assert.rejects(
      app.getServerTime({}),
      (err: ConnectError) => err.code === Code.Unavailable,
    );
  });
});
