/**
 * The load side of the transport benchmark, run as its own process by
 * transport.bench.ts with a JSON `LoadOptions` argument: `inflight` callers
 * loop on unary Echo, first for the warm-up, then for the measured window.
 * It sends "measuring" over IPC when the window opens and the `LoadResult`
 * when it closes.
 */
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import {
  createGrpcTransport as createConnectNodeGrpcTransport,
  createConnectTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { EchoRequestSchema, EchoService } from "../../gen/seckill/echo/v1/echo_pb.ts";
import { createGrpcTransport } from "../src/transport/grpc-client.ts";
import { grpcServiceDefinition } from "../src/transport/grpc-codec.ts";

export type ClientKind =
  | "adapter"
  | "adapter-observed"
  | "mesh"
  | "connect-grpc"
  | "connect"
  | "raw";

export interface LoadOptions {
  client: ClientKind;
  port: number;
  inflight: number;
  warmupSeconds: number;
  seconds: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  firstError?: string;
  seconds: number;
  /** Per call, in milliseconds, sorted. */
  p50: number;
  p99: number;
  /** CPU time of this process over the window, 1 = one core busy. */
  cpu: number;
}

const request = create(EchoRequestSchema, { message: "hello from the transport benchmark" });

async function caller(kind: ClientKind, port: number): Promise<() => Promise<unknown>> {
  const address = `127.0.0.1:${port}`;
  const baseUrl = `http://${address}`;
  switch (kind) {
    case "adapter": {
      const client = createClient(EchoService, createGrpcTransport({ address }));
      return () => client.echo(request);
    }
    case "adapter-observed":
    case "mesh": {
      // The interceptors the mesh puts on every outgoing call, and for "mesh" the
      // mesh transport itself (SWRR pick, opossum breaker with its timeout).
      const { clientMetrics, clientTracing } = await import("../src/transport/interceptors.ts");
      const { startTelemetry } = await import("../src/runtime/telemetry.ts");
      const { tracer } = startTelemetry({
        service: "bench-client",
        instance: "bench",
        version: "0",
        exporter: "none",
      });
      const interceptors = [clientTracing(tracer), clientMetrics()];
      if (kind === "adapter-observed") {
        const client = createClient(EchoService, createGrpcTransport({ address, interceptors }));
        return () => client.echo(request);
      }
      const { createMeshTransport } = await import("../src/mesh/balancer.ts");
      const { staticInstances } = await import("../src/mesh/discovery.ts");
      const { createLogger } = await import("../src/runtime/log.ts");
      const instance = { service: "echo", id: "bench", host: "127.0.0.1", port, weight: 1 };
      const transport = createMeshTransport({
        source: staticInstances("echo", [{ ...instance, zone: "", version: "" }]),
        log: createLogger("bench-client", "warn"),
        interceptors,
      });
      const client = createClient(EchoService, transport);
      return () => client.echo(request);
    }
    case "connect-grpc": {
      const transport = createConnectNodeGrpcTransport({ baseUrl }); // always HTTP/2;
      const client = createClient(EchoService, transport);
      return () => client.echo(request);
    }
    case "connect": {
      const transport = createConnectTransport({
        baseUrl,
        httpVersion: "2",
        useBinaryFormat: true,
      });
      const client = createClient(EchoService, transport);
      return () => client.echo(request);
    }
    case "raw": {
      // grpc-js with the same protobuf-es codecs and nothing of connect.
      const echo = grpcServiceDefinition(EchoService).echo!;
      const client = new grpc.Client(address, grpc.credentials.createInsecure());
      return () =>
        new Promise((resolve, reject) =>
          client.makeUnaryRequest(
            echo.path,
            echo.requestSerialize,
            echo.responseDeserialize,
            request,
            (err, value) => (err ? reject(err) : resolve(value)),
          ),
        );
    }
  }
}

/** Keeps `inflight` calls going until `seconds` have passed; the last ones are let finish. */
async function load(call: () => Promise<unknown>, inflight: number, seconds: number) {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await call();
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, loop));
  return { latencies, errors, firstError, seconds: (performance.now() - start) / 1000 };
}

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

const opts = JSON.parse(process.argv[2] ?? "{}") as LoadOptions;
const call = await caller(opts.client, opts.port);
await load(call, opts.inflight, opts.warmupSeconds);
process.send?.("measuring");
const cpu0 = process.cpuUsage();
const run = await load(call, opts.inflight, opts.seconds);
const { user, system } = process.cpuUsage(cpu0);
const sorted = Float64Array.from(run.latencies).sort();
const result: LoadResult = {
  requests: sorted.length,
  errors: run.errors,
  ...(run.firstError === undefined ? {} : { firstError: run.firstError }),
  seconds: run.seconds,
  p50: percentile(sorted, 50),
  p99: percentile(sorted, 99),
  cpu: (user + system) / 1e6 / run.seconds,
};
if (process.send) process.send(result, () => process.exit(0));
else {
  console.log(result);
  process.exit(0);
}
