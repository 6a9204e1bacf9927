import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, type ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { context, trace } from "@opentelemetry/api";
import { z } from "zod";
import { EchoService } from "../../../gen/seckill/echo/v1/echo_pb.ts";
import { Mesh } from "../mesh/mesh.ts";
import { type EtcdServer, startEtcd } from "../stack/index.ts";
import { createEtcd, type Etcd3 } from "../stores/etcd.ts";
import { type ServiceProcess, startServiceProcess } from "../testing/service-process.ts";
import { baseConfigSchema, ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { startTelemetry } from "./telemetry.ts";

const log = createLogger("server-test", "silent");
const repo = (path: string) => fileURLToPath(new URL(`../../../../${path}`, import.meta.url));

/** A grpc-js client for grpc.health.v1 built from the .proto file, independent of our own code. */
function healthClient(port: number) {
  const definition = loadSync(repo("proto/grpc/health/v1/health.proto"), {
    keepCase: true,
    enums: String,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const client = new pkg.grpc.health.v1.Health(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  );
  const check = (service = "") =>
    new Promise<string>((resolve, reject) =>
      (
        client as unknown as {
          check: (req: object, cb: (err: Error | null, res: { status: string }) => void) => void;
        }
      ).check({ service }, (err: Error | null, res: { status: string }) =>
        err ? reject(err) : resolve(res.status),
      ),
    );
  return { check, close: () => client.close() };
}

function reflectionServices(port: number): Promise<string[]> {
  const definition = loadSync(
    repo("node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto"),
    { keepCase: true },
  );
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  );
  return new Promise((resolve, reject) => {
    const call = (
      client as unknown as {
        ServerReflectionInfo: () => grpc.ClientDuplexStream<
          object,
          { list_services_response: { service: { name: string }[] } }
        >;
      }
    ).ServerReflectionInfo();
    call.on("data", (res) => {
      resolve(res.list_services_response.service.map((s: { name: string }) => s.name));
      call.end();
      client.close();
    });
    call.on("error", reject);
    call.write({ list_services: "*" });
  });
}

describe("config", () => {
  it("lists every bad variable in one readable error", () => {
    assert.throws(
      () =>
        loadConfig(baseConfigSchema, { PORT: "http", WEIGHT: "0", OTEL_TRACES_EXPORTER: "zipkin" }),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /PORT: .*\(got "http"\)/);
        assert.match(err.message, /WEIGHT: .*\(got "0"\)/);
        assert.match(err.message, /OTEL_TRACES_EXPORTER/);
        return true;
      },
    );
  });

  it("never prints the value of a secret variable", () => {
    const schema = baseConfigSchema.extend({ BUY_TOKEN_SECRET: z.string().min(32) });
    assert.throws(
      () => loadConfig(schema, { BUY_TOKEN_SECRET: "hunter2" }),
      (err: Error) =>
        /BUY_TOKEN_SECRET: .*value hidden/.test(err.message) && !err.message.includes("hunter2"),
    );
  });

  it("applies defaults and parses lists", () => {
    const config = loadConfig(baseConfigSchema, { ETCD_ENDPOINTS: "http://a:1, http://b:2" });
    assert.deepEqual(config.ETCD_ENDPOINTS, ["http://a:1", "http://b:2"]);
    assert.equal(config.REGISTRATION_TTL_SECONDS, 10);
  });
});

describe("services as processes, on a real etcd", () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd3;
  let mesh: Mesh;
  const children: ServiceProcess[] = [];
  const env = (service: string, id: string, extra: Record<string, string> = {}) => ({
    SERVICE_NAME: service,
    INSTANCE_ID: id,
    ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
    REGISTRATION_TTL_SECONDS: "3",
    SHUTDOWN_DELAY_MS: "300",
    ...extra,
  });
  const start = async (service: string, id: string, extra?: Record<string, string>) => {
    const child = await startServiceProcess({
      entry: "services/shared/src/testing/echo-main.ts",
      env: env(service, id, extra),
    });
    children.push(child);
    return child;
  };

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd(etcdServer.endpoints);
    const telemetry = startTelemetry({
      service: "server-test",
      instance: "test",
      version: "test",
      exporter: "none",
    });
    mesh = new Mesh({ etcd, log, tracer: telemetry.tracer });
  });
  after(async () => {
    await mesh?.close();
    for (const child of children) child.kill("SIGKILL");
    etcd?.close();
    await etcdServer?.stop();
  });

  it("carries one trace id and the caller's deadline across three processes", async () => {
    await start("echo-front", "front-1");
    await start("echo-back", "back-1");
    await mesh.ready("echo-front");
    const client = mesh.client(EchoService, "echo-front");
    const tracer = trace.getTracer("test");
    const span = tracer.startSpan("test-root");
    const res = await context.with(trace.setSpan(context.active(), span), () =>
      client.echo({ message: "hi", forwardToService: "echo-back" }, { timeoutMs: 3000 }),
    );
    span.end();
    const traceId = span.spanContext().traceId;
    assert.equal(res.instanceId, "front-1");
    assert.equal(res.traceId, traceId, "the first hop continues the caller's trace");
    assert.equal(res.forwarded?.instanceId, "back-1");
    assert.equal(res.forwarded?.traceId, traceId, "the second hop too");
    const first = Number(res.deadlineRemainingMs);
    const second = Number(res.forwarded?.deadlineRemainingMs);
    assert.ok(first > 0 && first <= 3000, `first hop saw ${first} ms left`);
    assert.ok(second > 0 && second <= first, `second hop saw ${second} ms left, first ${first}`);
  });

  it("serves reflection listing its services", async () => {
    const child = await start("echo-reflect", "reflect-1");
    const services = await reflectionServices(child.port);
    assert.ok(services.includes("seckill.echo.v1.EchoService"), services.join());
    assert.ok(services.includes("grpc.health.v1.Health"), services.join());
  });

  it("exports Prometheus metrics including served RPCs", async () => {
    const child = await start("echo-metrics", "metrics-1");
    await mesh.ready("echo-metrics");
    await mesh.client(EchoService, "echo-metrics").echo({ message: "m" });
    const body = await (await fetch(`http://127.0.0.1:${child.metricsPort}/metrics`)).text();
    assert.match(
      body,
      /seckill_rpc_server_duration_seconds_count\{service="seckill.echo.v1.EchoService",method="Echo",code="ok"\} 1/,
    );
    assert.match(body, /seckill_registry_registered\{service="echo-metrics"\} 1/);
  });

  it("reports SERVING, then NOT_SERVING during shutdown, and exits 0", async () => {
    const child = await start("echo-health", "health-1", { SHUTDOWN_DELAY_MS: "1500" });
    const health = healthClient(child.port);
    assert.equal(await health.check(), "SERVING");
    assert.equal(await health.check("seckill.echo.v1.EchoService"), "SERVING");
    await assert.rejects(
      health.check("no.such.Service"),
      (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
    );
    child.kill("SIGTERM");
    await child.waitForLog((l) => l.msg === "shutting down: NOT_SERVING");
    assert.equal(await health.check(), "NOT_SERVING");
    health.close();
    assert.deepEqual(await child.exited, { code: 0, signal: null });
  });

  it("fails no in-flight call when an instance is stopped with SIGTERM under steady load", async () => {
    const victim = await start("echo-drain", "drain-a");
    await start("echo-drain", "drain-b");
    await mesh.ready("echo-drain");
    const client = mesh.client(EchoService, "echo-drain");
    const served = new Map<string, number>();
    const failures: string[] = [];
    let stopAt = Number.POSITIVE_INFINITY;
    // Count has side effects, so the mesh never retries it: any failure would show here.
    const worker = async () => {
      while (Date.now() < stopAt) {
        try {
          const res = await client.count({ delta: 1n });
          served.set(res.instanceId, (served.get(res.instanceId) ?? 0) + 1);
        } catch (err) {
          failures.push(`${(err as ConnectError).code}: ${(err as Error).message}`);
        }
      }
    };
    stopAt = Date.now() + 60_000;
    const workers = Array.from({ length: 16 }, worker);
    await new Promise((r) => setTimeout(r, 700));
    victim.kill("SIGTERM");
    const exit = await victim.exited;
    await new Promise((r) => setTimeout(r, 300));
    stopAt = 0;
    await Promise.all(workers);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(
      (served.get("drain-a") ?? 0) > 50,
      `the victim served calls before it stopped: ${JSON.stringify([...served])}`,
    );
    assert.ok((served.get("drain-b") ?? 0) > 50);
    assert.deepEqual(failures, []);
  });

  it("exits 1 with a readable message on bad configuration", async () => {
    await assert.rejects(
      startServiceProcess({
        entry: "services/shared/src/testing/echo-main.ts",
        env: { ...env("echo-bad", "bad-1"), PORT: "not-a-port" },
        readyTimeoutMs: 10_000,
      }),
      /exited \(\{"code":1.*PORT: /s,
    );
  });

  it("gives a breaker-guarded DEADLINE_EXCEEDED when the callee is slower than the caller's deadline", async () => {
    await start("echo-slow", "slow-1");
    await mesh.ready("echo-slow");
    const client = mesh.client(EchoService, "echo-slow");
    await assert.rejects(
      client.echo({ sleepMs: 2000 }, { timeoutMs: 200 }),
      (err: ConnectError) => err.code === Code.DeadlineExceeded,
    );
  });
});
