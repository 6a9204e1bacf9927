import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { EchoService } from "../../../gen/seckill/echo/v1/echo_pb.ts";
import { createLogger } from "../runtime/log.ts";
import { freePort } from "../stack/index.ts";
import { addRoutes, bindServer } from "../transport/grpc-server.ts";
import { createMeshTransport } from "./balancer.ts";
import { staticInstances } from "./discovery.ts";
import type { ServiceInstance } from "./registry.ts";

const log = createLogger("balancer-test", "silent");

const instance = (id: string, weight = 1, port = 1): ServiceInstance => ({
  service: "echo",
  id,
  host: "127.0.0.1",
  port,
  weight,
  zone: "",
  version: "",
});

/** In-memory echo instances whose behaviour a test switches per instance. */
function fakeInstances(behaviour: Map<string, "ok" | "unavailable" | "slow">) {
  const served: string[] = [];
  const connect = (inst: ServiceInstance) =>
    createRouterTransport(({ service }) =>
      service(EchoService, {
        async echo(req, ctx) {
          served.push(inst.id);
          const mode = behaviour.get(inst.id) ?? "ok";
          if (mode === "unavailable") throw new ConnectError("down", Code.Unavailable);
          if (mode === "slow") {
            await new Promise((resolve, reject) => {
              const t = setTimeout(resolve, 2000);
              ctx.signal.addEventListener("abort", () => {
                clearTimeout(t);
                reject(ctx.signal.reason);
              });
            });
          }
          return { message: req.message, instanceId: inst.id };
        },
        count: () => {
          served.push(inst.id);
          if (behaviour.get(inst.id) === "unavailable")
            throw new ConnectError("down", Code.Unavailable);
          return { total: 1n, instanceId: inst.id };
        },
      }),
    );
  return { served, connect };
}

describe("mesh transport", () => {
  it("balances 5,1,1 as a a b a c a a", async () => {
    const fake = fakeInstances(new Map());
    const transport = createMeshTransport({
      source: staticInstances("echo", [instance("a", 5), instance("b", 1), instance("c", 1)]),
      log,
      connect: fake.connect,
    });
    const client = createClient(EchoService, transport);
    for (let i = 0; i < 14; i++) await client.echo({ message: "x" });
    assert.deepEqual(fake.served, "aabacaa".repeat(2).split(""));
    transport.close();
  });

  it("opens the breaker of a failing instance, sends it no traffic, then closes it after a good half-open trial", async () => {
    const behaviour = new Map<string, "ok" | "unavailable">([["b", "unavailable"]]);
    const fake = fakeInstances(behaviour);
    const transport = createMeshTransport({
      source: staticInstances("echo", [instance("a"), instance("b")]),
      log,
      connect: fake.connect,
      breaker: { volumeThreshold: 3, resetTimeoutMs: 300 },
    });
    const client = createClient(EchoService, transport);
    // Count is not idempotent: failures reach the caller and feed b's breaker.
    let failures = 0;
    for (let i = 0; i < 12; i++) await client.count({ delta: 1n }).catch(() => failures++);
    assert.ok(failures >= 3, `expected b to fail a few calls, got ${failures}`);
    const b = transport.stats().find((s) => s.instance === "b");
    assert.equal(b?.state, "open");

    fake.served.length = 0;
    for (let i = 0; i < 20; i++) await client.count({ delta: 1n });
    assert.deepEqual(new Set(fake.served), new Set(["a"]), "no call reaches an open instance");

    behaviour.set("b", "ok");
    await new Promise((r) => setTimeout(r, 350));
    fake.served.length = 0;
    for (let i = 0; i < 10; i++) await client.count({ delta: 1n });
    assert.ok(fake.served.includes("b"), "the half-open trial reached b");
    assert.equal(transport.stats().find((s) => s.instance === "b")?.state, "closed");
    transport.close();
  });

  it("aborts a call that outlives the breaker timeout", async () => {
    const fake = fakeInstances(new Map([["a", "slow" as const]]));
    const transport = createMeshTransport({
      source: staticInstances("echo", [instance("a")]),
      log,
      connect: fake.connect,
      breaker: { timeoutMs: 100 },
    });
    const client = createClient(EchoService, transport);
    const started = Date.now();
    await assert.rejects(client.echo({ message: "slow" }), (err: ConnectError) => {
      assert.equal(err.code, Code.DeadlineExceeded);
      return true;
    });
    assert.ok(Date.now() - started < 1500, "the call did not wait for the slow handler");
    transport.close();
  });

  describe("over real grpc-js connections", () => {
    const servers: grpc.Server[] = [];
    after(() => {
      for (const s of servers) s.forceShutdown();
    });

    async function echoServer(id: string): Promise<number> {
      const server = new grpc.Server();
      addRoutes(server, (router) =>
        router.service(EchoService, {
          echo: (req) => ({ message: req.message, instanceId: id }),
          count: () => ({ total: 1n, instanceId: id }),
        }),
      );
      servers.push(server);
      return bindServer(server, "127.0.0.1", 0);
    }

    it("retries an idempotent call once on another instance, never a call with side effects", async () => {
      const livePort = await echoServer("live");
      const deadPort = await freePort(); // nothing listens here
      const transport = createMeshTransport({
        source: staticInstances("echo", [
          instance("dead", 1, deadPort),
          instance("live", 1, livePort),
        ]),
        log,
        breaker: { volumeThreshold: 1000 }, // keep the breaker out of this test
      });
      const client = createClient(EchoService, transport);
      for (let i = 0; i < 6; i++) {
        const res = await client.echo({ message: `m${i}` });
        assert.equal(res.instanceId, "live");
      }
      const outcomes = await Promise.allSettled(
        Array.from({ length: 6 }, () => client.count({ delta: 1n })),
      );
      const failed = outcomes.filter((o) => o.status === "rejected");
      assert.equal(
        failed.length,
        3,
        "every Count sent to the dead instance fails, none is retried",
      );
      for (const f of failed)
        assert.equal(((f as PromiseRejectedResult).reason as ConnectError).code, Code.Unavailable);
      transport.close();
    });

    it("answers UNAVAILABLE with a clear message when no instance is registered", async () => {
      const transport = createMeshTransport({ source: staticInstances("nothing", []), log });
      const client = createClient(EchoService, transport);
      await assert.rejects(client.echo({}), /nothing: no instance is registered/);
      transport.close();
    });

    it("answers INVALID_ARGUMENT to a request that does not decode, and the server keeps serving", async () => {
      const port = await echoServer("strict");
      const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // field 1, length far past the end
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        raw.makeUnaryRequest(
          "/seckill.echo.v1.EchoService/Echo",
          (b: Buffer) => b,
          (b: Buffer) => b,
          garbage,
          (e) => resolve(e!),
        ),
      );
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /malformed request/);
      raw.close();
      const transport = createMeshTransport({
        source: staticInstances("echo", [instance("strict", 1, port)]),
        log,
      });
      assert.equal(
        (await createClient(EchoService, transport).echo({ message: "ok" })).message,
        "ok",
      );
      transport.close();
    });
  });
});
