/**
 * createEdgeStack on its own (no etcd, no upstreams): what the HTTP/1.1 port does with a request
 * it refuses before reading its body. The Connect conformance suite (npm run conformance) found
 * that the keep-alive connection then stalled: the next request on it hung until the idle timeout
 * reset it.
 */
import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { trace } from "@opentelemetry/api";
import { pino } from "pino";
import { Health } from "../../gen/grpc/health/v1/health_pb.ts";
import { HealthState } from "../../shared/src/transport/health.ts";
import { createEdgeStack, type EdgeStack } from "./edge-server.ts";

const READ_MAX_BYTES = 4096;

describe("the edge stack over HTTP/1.1", () => {
  let stack: EdgeStack;
  let port: number;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  before(async () => {
    stack = createEdgeStack({
      log: pino({ level: "silent" }),
      tracer: trace.getTracer("edge-stack-test"),
      interceptors: [],
      readMaxBytes: READ_MAX_BYTES,
      routes: (router) => router.service(Health, new HealthState().impl()),
    });
    await new Promise<void>((resolve) => stack.h1.listen(0, "127.0.0.1", resolve));
    port = (stack.h1.address() as AddressInfo).port;
  });
  after(async () => {
    agent.destroy();
    await stack.drain(0);
  });

  /** grpc.health.v1.Health/Check in gRPC-Web: connect reads the enveloped body as it comes. */
  const check = (json: string) =>
    new Promise<{ status: number; grpcStatus: string; socket: number }>((resolve, reject) => {
      const message = Buffer.from(json);
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(message.length, 1);
      const body = Buffer.concat([prefix, message]);
      const req = request(
        {
          host: "127.0.0.1",
          port,
          agent,
          method: "POST",
          path: "/grpc.health.v1.Health/Check",
          headers: { "content-type": "application/grpc-web+json", "content-length": body.length },
          timeout: 3000,
        },
        (res) => {
          const socket = res.socket.localPort ?? 0;
          let text = "";
          res.on("data", (chunk: Buffer) => {
            text += chunk.toString("latin1");
          });
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              grpcStatus: String(
                res.headers["grpc-status"] ?? /grpc-status: ?(\d+)/.exec(text)?.[1] ?? "",
              ),
              socket,
            }),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error("no answer within 3 s")));
      req.on("error", reject);
      req.end(body);
    });

  it("answers the next request on the connection after refusing a too large one", async () => {
    const big = await check(JSON.stringify({ service: "x".repeat(200 * 1024) }));
    assert.equal(big.grpcStatus, "8", "a message over readMaxBytes is RESOURCE_EXHAUSTED");
    const started = Date.now();
    const next = await check(JSON.stringify({ service: "" }));
    assert.equal(next.grpcStatus, "0");
    assert.equal(next.socket, big.socket, "the keep-alive connection is reused");
    assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
  });
});
