import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { ActivityStatus } from "../../../gen/seckill/common/v1/common_pb.ts";
import { EchoService } from "../../../gen/seckill/echo/v1/echo_pb.ts";
import { type EtcdServer, startEtcd } from "../stack/index.ts";
import {
  activityFixture,
  codeIs,
  expectCode,
  metricValue,
  parseMetrics,
  pollUntil,
  type ServiceUnderTest,
  serviceEnv,
  startAsProcess,
  startFront,
} from "./index.ts";

describe("pollUntil", () => {
  it("answers once the check holds, with the time it took", async () => {
    let calls = 0;
    const ms = await pollUntil(() => ++calls === 3, { intervalMs: 20 });
    assert.equal(calls, 3);
    assert.ok(ms >= 30, `took ${ms} ms for three checks 20 ms apart`);
  });

  it("fails after the timeout, naming what it waited for", async () => {
    let calls = 0;
    await assert.rejects(
      pollUntil(
        () => {
          calls++;
          return false;
        },
        { timeoutMs: 50, intervalMs: 5, message: "the moon" },
      ),
      /timed out after 50 ms waiting for the moon/,
    );
    assert.ok(calls > 2, `checked ${calls} times`);
  });

  it("fails at once on a throwing check, unless told to retry errors", async () => {
    let calls = 0;
    const boom = () => {
      calls++;
      throw new Error("boom");
    };
    await assert.rejects(pollUntil(boom, { timeoutMs: 1000 }), /^Error: boom$/);
    assert.equal(calls, 1);
    await assert.rejects(
      pollUntil(boom, { timeoutMs: 30, intervalMs: 5, retryErrors: true }),
      /timed out after 30 ms .*last check threw: Error: boom/,
    );
    assert.ok(calls > 2);
    let n = 0;
    await pollUntil(
      () => {
        if (++n < 3) throw new Error("not yet");
        return true;
      },
      { intervalMs: 1, retryErrors: true },
    );
    assert.equal(n, 3);
  });
});

const PAGE = `# HELP seckill_x_total x
# TYPE seckill_x_total counter
seckill_x_total{result="ok",by="app"} 3
seckill_x_total{result="ok",by="core"} 4
seckill_x_total{result="sold out",by="app"} 5
seckill_x_total_extra 100
seckill_plain 7 1700000000000
seckill_quoted{msg="a \\"b\\", c\\\\d"} 2
seckill_lat_seconds_bucket{le="0.1",op="get"} 1
seckill_lat_seconds_bucket{le="+Inf",op="get"} 2
seckill_lat_seconds_sum{op="get"} 0.25
seckill_lat_seconds_count{op="get"} 2
seckill_lat_seconds_count{op="set"} 6
`;

describe("metricValue", () => {
  it("parses the text format, escapes and timestamps included", () => {
    const samples = parseMetrics(PAGE);
    assert.equal(samples.length, 11);
    assert.deepEqual(samples[5], {
      name: "seckill_quoted",
      labels: { msg: 'a "b", c\\d' },
      value: 2,
    });
    assert.deepEqual(samples[4], { name: "seckill_plain", labels: {}, value: 7 });
    assert.equal(samples[7]?.value, 2);
    assert.equal(samples[7]?.labels.le, "+Inf");
  });

  it("sums the series whose labels include the ones asked for, from a page's text", async () => {
    assert.equal(await metricValue(PAGE, "seckill_x_total"), 12);
    assert.equal(await metricValue(PAGE, "seckill_x_total", { result: "ok" }), 7);
    assert.equal(await metricValue(PAGE, "seckill_x_total", { result: "ok", by: "app" }), 3);
    assert.equal(await metricValue(PAGE, "seckill_x_total", { result: "sold out" }), 5);
    assert.equal(await metricValue(PAGE, "seckill_x_total", { result: "o" }), 0, "exact values");
    assert.equal(await metricValue(PAGE, "seckill_x"), 0, "exact names");
    // A histogram: its name counts observations; _sum is asked for by name.
    assert.equal(await metricValue(PAGE, "seckill_lat_seconds"), 8);
    assert.equal(await metricValue(PAGE, "seckill_lat_seconds", { op: "get" }), 2);
    assert.equal(await metricValue(PAGE, "seckill_lat_seconds_sum"), 0.25);
    await assert.rejects(
      metricValue(PAGE, "seckill_x_total", { by: "nobody" }, { required: true }),
      /no series of seckill_x_total/,
    );
  });

  it("reads a registry, and a /metrics endpoint by port, URL or handle", async () => {
    const registry = new Registry();
    const c = new Counter({
      name: "k_total",
      help: "k",
      labelNames: ["a"],
      registers: [registry],
    });
    const h = new Histogram({
      name: "k_seconds",
      help: "k",
      labelNames: ["a"],
      buckets: [1],
      registers: [registry],
    });
    const g = new Gauge({ name: "k_gauge", help: "k", labelNames: ["a"], registers: [registry] });
    c.inc({ a: "x" }, 2);
    c.inc({ a: "y" }, 3);
    h.observe({ a: "x" }, 0.5);
    h.observe({ a: "x" }, 4);
    h.observe({ a: "y" }, 4);
    g.set({ a: "x" }, 0);
    assert.equal(await metricValue(registry, "k_total"), 5);
    assert.equal(await metricValue(registry, "k_total", { a: "y" }), 3);
    assert.equal(await metricValue(registry, "k_seconds", { a: "x" }), 2);
    assert.equal(await metricValue(registry, "k_seconds_sum", { a: "x" }), 4.5);
    assert.equal(await metricValue(registry, "k_seconds_bucket", { a: "x", le: "1" }), 1);
    assert.equal(await metricValue(registry, "k_gauge", { a: "x" }, { required: true }), 0);
    await assert.rejects(metricValue(registry, "k_gauge", { a: "y" }, { required: true }));
    assert.equal(await metricValue(registry, "absent_total"), 0);

    const server = createServer(async (_req, res) => res.end(await registry.metrics()));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      assert.equal(await metricValue(port, "k_total", { a: "x" }), 2);
      assert.equal(await metricValue({ metricsPort: port }, "k_seconds", { a: "y" }), 1);
      assert.equal(await metricValue(`http://127.0.0.1:${port}/metrics`, "k_total"), 5);
      assert.equal(await metricValue(new URL(`http://127.0.0.1:${port}/`), "k_total"), 5);
    } finally {
      server.close();
    }
  });
});

describe("expectCode and codeIs", () => {
  const fail = (code: Code, message: string) => Promise.reject(new ConnectError(message, code));

  it("passes on the expected code and message, and answers the error", async () => {
    const err = await expectCode(fail(Code.NotFound, "no such order"), Code.NotFound, /such/);
    assert.equal(err.rawMessage, "no such order");
    await expectCode(fail(Code.NotFound, "x"), Code.NotFound, { what: "a lookup" });
    // Matched against the raw message, without the "[not_found] " prefix of err.message.
    await expectCode(fail(Code.NotFound, "x"), Code.NotFound, /^x$/);
    assert.equal(codeIs(Code.Internal)(new ConnectError("x", Code.Internal)), true);
    assert.throws(
      () => {
        throw new ConnectError("title is required", Code.InvalidArgument);
      },
      codeIs(Code.InvalidArgument, /title/),
    );
  });

  it("fails on another code, another message, success, or another error", async () => {
    await assert.rejects(expectCode(fail(Code.Unavailable, "down"), Code.NotFound), (err: Error) =>
      /'Unavailable' !== 'NotFound'|down/.test(err.message),
    );
    await assert.rejects(
      expectCode(fail(Code.NotFound, "no such order"), Code.NotFound, /already paid/),
      /already paid/,
    );
    await assert.rejects(
      expectCode(Promise.resolve("fine"), Code.NotFound, { what: "a lookup" }),
      /a lookup: expected NotFound, but the call succeeded/,
    );
    await assert.rejects(
      expectCode(Promise.reject(new Error("plain")), Code.Internal),
      /not a ConnectError: Error: plain/,
    );
    assert.throws(() =>
      assert.throws(() => {
        throw new ConnectError("x", Code.Internal);
      }, codeIs(Code.InvalidArgument)),
    );
  });
});

describe("activityFixture", () => {
  it("is a published activity open now, with what is overridden", () => {
    const before = Date.now();
    const a = activityFixture();
    assert.equal(a.id, "act-1");
    assert.equal(a.title, "Test sale");
    assert.equal(a.totalStock, 10n);
    assert.equal(a.perUserLimit, 2);
    assert.equal(a.status, ActivityStatus.PUBLISHED);
    assert.equal(a.revision, 1n);
    const start = Number(a.startTime!.seconds) * 1000;
    const end = Number(a.endTime!.seconds) * 1000;
    assert.ok(start < before && end > before + 3_000_000, "window open an hour either side");
    const b = activityFixture({
      id: "b",
      totalStock: 1000,
      perUserLimit: 5,
      endMs: before - 1000,
      revision: 3,
      status: ActivityStatus.ENDED,
    });
    assert.deepEqual(
      [b.id, b.totalStock, b.perUserLimit, b.revision, b.status],
      ["b", 1000n, 5, 3n, ActivityStatus.ENDED],
    );
    assert.equal(Number(b.endTime!.seconds), Math.floor((before - 1000) / 1000));
  });
});

describe("serviceEnv", () => {
  it("carries the stores' addresses and quiet defaults; extra wins", () => {
    const env = serviceEnv(
      { etcd: { endpoints: ["http://a:1", "http://b:2"] }, redis: { url: "redis://r:3" } },
      { SHUTDOWN_DELAY_MS: "5", INSTANCE_ID: "x" },
    );
    assert.equal(env.ETCD_ENDPOINTS, "http://a:1,http://b:2");
    assert.equal(env.REDIS_URL, "redis://r:3");
    assert.equal(env.MYSQL_URI, undefined);
    assert.equal(env.SHUTDOWN_DELAY_MS, "5");
    assert.equal(env.INSTANCE_ID, "x");
    assert.equal(env.LOG_LEVEL, process.env.TEST_LOG_LEVEL ?? "silent");
    assert.equal(
      serviceEnv({ etcd: { endpoints: ["e"] }, mariadb: { uri: "mysql://m" } }).MYSQL_URI,
      "mysql://m",
    );
  });
});

describe("services under test: a process, and a front that watches its calls", () => {
  let etcd: EtcdServer;
  let hidden: EtcdServer;
  let target: ServiceUnderTest | undefined;
  let front: ServiceUnderTest | undefined;
  const seen: string[] = [];
  let failNext = 0;
  const watch: Interceptor = (next) => async (req) => {
    seen.push(req.method.name);
    if (failNext > 0) {
      failNext--;
      throw new ConnectError("failing as asked", Code.Unavailable);
    }
    return next(req);
  };

  before(async () => {
    [etcd, hidden] = await Promise.all([startEtcd(), startEtcd()]);
  });
  after(async () => {
    await front?.stop();
    await target?.stop();
    await Promise.all([etcd?.stop(), hidden?.stop()]);
  });

  it("starts a service as a process and forwards its calls through a front", async () => {
    target = await startAsProcess(
      "echo",
      serviceEnv({ etcd: hidden }, { SERVICE_NAME: "echo", INSTANCE_ID: "echo-process" }),
      { entry: "services/shared/src/testing/echo-main.ts" },
    );
    front = await startFront({
      name: "echo",
      service: EchoService,
      target,
      env: serviceEnv({ etcd }, { INSTANCE_ID: "echo-front" }),
      interceptors: [watch],
    });
    const direct = target.client(EchoService);
    const viaFront = front.client(EchoService);

    const res = await viaFront.echo({ message: "hi" });
    assert.equal(res.message, "hi");
    assert.equal(res.instanceId, "echo-process", "answered by the process");
    await expectCode(viaFront.echo({ message: "x", failCode: Code.NotFound }), Code.NotFound, {
      message: /failing as asked/,
    });
    failNext = 1;
    await expectCode(viaFront.echo({ message: "y" }), Code.Unavailable, /failing as asked/);
    assert.deepEqual(seen, ["Echo", "Echo", "Echo"]);
    await direct.echo({ message: "direct" });
    assert.equal(seen.length, 3, "a direct call does not pass the front");

    // The process counted what reached it: two through the front, one direct.
    assert.equal(
      await metricValue(target, "seckill_rpc_server_duration_seconds", { method: "Echo" }),
      3,
    );
    assert.equal(
      await metricValue(target, "seckill_rpc_server_duration_seconds", {
        method: "Echo",
        code: "NotFound",
      }),
      1,
    );
    await target.stop();
    await expectCode(viaFront.echo({ message: "gone" }), Code.Unavailable);
  });
});
