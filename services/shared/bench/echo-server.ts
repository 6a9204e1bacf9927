/**
 * The server side of the transport benchmark, run as its own process by
 * transport.bench.ts: `node --import tsx echo-server.ts <kind>`. It tells its
 * port over IPC, then answers "mark" / "report" (CPU used since the mark) and
 * exits on "stop" (so that --cpu-prof can write its profile).
 */
import { createServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { EchoResponseSchema, EchoService } from "../../gen/seckill/echo/v1/echo_pb.ts";
import { echoRoutes } from "../src/testing/echo-service.ts";
import { grpcServiceDefinition } from "../src/transport/grpc-codec.ts";
import {
  addRoutes,
  bindServer,
  type GrpcRouter,
  serverOptions,
} from "../src/transport/grpc-server.ts";

export type ServerKind = "adapter" | "adapter-observed" | "connect-node" | "raw";

const instanceId = "bench";
// Echo never forwards here, so the mesh is never touched.
const routes = echoRoutes({
  config: { INSTANCE_ID: instanceId },
  mesh: {},
} as unknown as Parameters<typeof echoRoutes>[0]);

async function start(kind: ServerKind): Promise<number> {
  switch (kind) {
    case "adapter":
      return serveGrpc((server) => addRoutes(server, routes));
    case "adapter-observed": {
      // What startService puts in front of every handler: tracing with a registered
      // provider and no exporter, Prometheus histograms, the error log.
      const { serverErrorLog, serverMetrics, serverTracing } = await import(
        "../src/transport/interceptors.ts"
      );
      const { startTelemetry } = await import("../src/runtime/telemetry.ts");
      const { createLogger } = await import("../src/runtime/log.ts");
      const { tracer } = startTelemetry({
        service: "bench",
        instance: instanceId,
        version: "0",
        exporter: "none",
      });
      const log = createLogger("bench", "warn", instanceId);
      return serveGrpc((server) =>
        addRoutes(server, routes, {
          interceptors: [serverTracing(tracer), serverMetrics(), serverErrorLog(log)],
        }),
      );
    }
    case "raw":
      // grpc-js with a hand-written handler: same protobuf-es codecs, no connect HandlerContext.
      return serveGrpc((server) =>
        server.addService(grpcServiceDefinition(EchoService), {
          echo: (
            call: grpc.ServerUnaryCall<{ message: string }, unknown>,
            callback: grpc.sendUnaryData<unknown>,
          ) =>
            callback(
              null,
              create(EchoResponseSchema, {
                message: call.request.message,
                instanceId,
                deadlineRemainingMs: -1n,
              }),
            ),
        }),
      );
    case "connect-node": {
      // The edge's stack: the same routes on connect-node's router (gRPC, gRPC-Web, Connect).
      const server = createServer(
        connectNodeAdapter({ routes: (router) => routes(router as unknown as GrpcRouter) }),
      );
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return (server.address() as AddressInfo).port;
    }
  }
}

function serveGrpc(add: (server: grpc.Server) => void): Promise<number> {
  const server = new grpc.Server(serverOptions);
  add(server);
  return bindServer(server, "127.0.0.1", 0);
}

const send = (message: unknown) => process.send?.(message);
let mark = { cpu: process.cpuUsage(), at: performance.now() };
process.on("message", (message) => {
  if (message === "mark") mark = { cpu: process.cpuUsage(), at: performance.now() };
  if (message === "report") {
    const { user, system } = process.cpuUsage(mark.cpu);
    send({ cpu: (user + system) / 1000 / (performance.now() - mark.at) });
  }
  if (message === "stop") process.exit(0);
});
process.on("disconnect", () => process.exit(0));

send({ port: await start(process.argv[2] as ServerKind) });
