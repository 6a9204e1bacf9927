/**
 * The connect-node counterpart of shared/src/server.ts startService, for the
 * public edge: the same lifecycle (telemetry, etcd, mesh, grpc.health.v1,
 * /metrics, registration, graceful shutdown) around a connect-node router
 * served over h2c on PORT (Connect, gRPC-Web and gRPC on one port) and over
 * HTTP/1.1 on HTTP1_PORT (Connect and gRPC-Web for clients without h2c,
 * i.e. browsers), with optional CORS on both.
 *
 * Shutdown: NOT_SERVING → revoke the etcd lease → keep serving
 * SHUTDOWN_DELAY_MS while load balancers notice → end server streams with
 * UNAVAILABLE, send GOAWAY / stop keep-alive, wait for in-flight calls
 * (SHUTDOWN_TIMEOUT_MS at most) → close the stores.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { BaseConfig } from "../../shared/src/config.ts";
import { createEtcd, sleep } from "../../shared/src/etcd.ts";
import { Health, HealthState, ServingStatus } from "../../shared/src/health.ts";
import { serverErrorLog, serverMetrics, serverTracing } from "../../shared/src/interceptors.ts";
import { createLogger, type Logger } from "../../shared/src/log.ts";
import { Mesh } from "../../shared/src/mesh.ts";
import { type MetricsServer, serveMetrics } from "../../shared/src/metrics.ts";
import { type Registration, register } from "../../shared/src/registry.ts";
import type { ServiceContext } from "../../shared/src/server.ts";
import { startTelemetry } from "../../shared/src/telemetry.ts";
import { peerAddressKey } from "./client-ip.ts";
import { type CorsOptions, withCors } from "./cors.ts";

export interface EdgeConfig extends BaseConfig {
  HTTP1_PORT: number;
  MAX_REQUEST_BYTES: number;
}

/** What setup returns: the routes, and what to stop them with. */
export interface EdgeRoutes {
  /** Registers the public services on the router (connect-node). */
  routes(router: ConnectRouter): void;
  cors?: CorsOptions;
}

export interface EdgeServiceContext<C extends EdgeConfig> extends ServiceContext<C> {
  /**
   * Aborted with UNAVAILABLE when draining starts: pass it as the
   * `shutdownSignal` of server-streaming routes so long streams end and their
   * clients reconnect to another instance (unary calls are left to finish).
   */
  readonly streamShutdownSignal: AbortSignal;
}

export interface EdgeServiceSpec<C extends EdgeConfig> {
  name: string;
  config: C;
  setup(ctx: EdgeServiceContext<C>): Promise<EdgeRoutes> | EdgeRoutes;
  /** Closes what setup opened; runs after in-flight calls drained. */
  close?(): Promise<void>;
  /** Extra server interceptors, innermost last. */
  interceptors?: Interceptor[];
  /** Defaults to true. */
  register?: boolean;
}

export interface RunningEdge {
  readonly name: string;
  /** h2c: Connect, gRPC-Web, gRPC. Registered in etcd. */
  readonly port: number;
  /** HTTP/1.1: Connect, gRPC-Web. */
  readonly http1Port: number;
  readonly metricsPort: number;
  readonly health: HealthState;
  readonly log: Logger;
  readonly registration: Registration | undefined;
  /** Calls being served right now. */
  readonly inflight: number;
  shutdown(reason?: string): Promise<void>;
}

type NodeReq = IncomingMessage | Http2ServerRequest;
type NodeRes = ServerResponse | Http2ServerResponse;

export async function startEdgeService<C extends EdgeConfig>(
  spec: EdgeServiceSpec<C>,
): Promise<RunningEdge> {
  const { config, name } = spec;
  const log = createLogger(name, config.LOG_LEVEL, config.INSTANCE_ID);
  const telemetry = startTelemetry({
    service: name,
    instance: config.INSTANCE_ID,
    version: config.VERSION,
    exporter: config.OTEL_TRACES_EXPORTER,
    otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
  });
  const etcd = createEtcd(config.ETCD_ENDPOINTS);
  const mesh = new Mesh({
    etcd,
    log,
    tracer: telemetry.tracer,
    breaker: { timeoutMs: config.CALL_TIMEOUT_MS },
  });
  const shutdownController = new AbortController();
  const streamController = new AbortController();
  const ctx: EdgeServiceContext<C> = {
    name,
    config,
    log,
    tracer: telemetry.tracer,
    etcd,
    mesh,
    shutdownSignal: shutdownController.signal,
    streamShutdownSignal: streamController.signal,
  };

  let edge: EdgeRoutes;
  try {
    edge = await spec.setup(ctx);
  } catch (err) {
    await mesh.close();
    etcd.close();
    await spec.close?.().catch(() => {});
    throw err;
  }

  let health: HealthState | undefined;
  const handler = connectNodeAdapter({
    routes(router) {
      edge.routes(router);
      const served = [...new Set(router.handlers.map((h) => h.service.typeName))];
      health = new HealthState(served);
      // Probes are neither traced nor counted; Watch ends when draining starts.
      router.service(Health, health.impl(), {
        interceptors: [],
        shutdownSignal: streamController.signal,
      });
    },
    interceptors: [
      serverTracing(telemetry.tracer),
      serverMetrics(),
      serverErrorLog(log),
      ...(spec.interceptors ?? []),
    ],
    readMaxBytes: config.MAX_REQUEST_BYTES,
    contextValues: (req) =>
      createContextValues().set(peerAddressKey, req.socket?.remoteAddress ?? undefined),
  });
  const healthState = health!;

  let inflight = 0;
  const counted = (req: NodeReq, res: NodeRes) => {
    inflight++;
    res.once("close", () => inflight--);
    handler(req, res);
  };
  const serve = edge.cors ? withCors(edge.cors, counted) : counted;

  const h2 = http2.createServer({}, serve);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const h1 = http.createServer({ keepAliveTimeout: 5000 }, serve);
  const sockets = new Set<Socket>();
  h1.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  let port: number;
  let http1Port: number;
  let metrics: MetricsServer;
  try {
    port = await listen(h2, config.HOST, config.PORT);
    http1Port = await listen(h1, config.HOST, config.HTTP1_PORT);
    metrics = await serveMetrics(config.HOST, config.METRICS_PORT, () => healthState.serving);
  } catch (err) {
    h2.close();
    h1.close();
    await mesh.close();
    etcd.close();
    await spec.close?.().catch(() => {});
    throw err;
  }

  let registration: Registration | undefined;
  if (spec.register !== false) {
    try {
      registration = await register(
        etcd,
        {
          service: name,
          id: config.INSTANCE_ID,
          host: config.ADVERTISE_HOST ?? config.HOST,
          port,
          weight: config.WEIGHT,
          zone: config.ZONE,
          version: config.VERSION,
        },
        { ttlSeconds: config.REGISTRATION_TTL_SECONDS, log },
      );
    } catch (err) {
      h2.close();
      h1.close();
      await metrics.close();
      await mesh.close();
      etcd.close();
      await spec.close?.().catch(() => {});
      throw err;
    }
  }
  healthState.setAll(ServingStatus.SERVING);
  log.info({ port, http1Port, metricsPort: metrics.port }, "serving");

  /** Waits until no call is in flight, or the timeout; then cuts what is left. */
  const drain = async () => {
    const started = Date.now();
    h2.close();
    h1.close();
    for (const session of sessions) session.close(); // GOAWAY: open streams may finish
    while (inflight > 0 && Date.now() - started < config.SHUTDOWN_TIMEOUT_MS) {
      h1.closeIdleConnections();
      await sleep(20);
    }
    if (inflight > 0) log.warn({ inflight }, "drain timed out; closing remaining calls");
    for (const session of sessions) session.destroy();
    h1.closeAllConnections();
    for (const socket of sockets) socket.destroy();
  };

  let stopping: Promise<void> | undefined;
  const shutdown = (reason = "shutdown") => {
    stopping ??= (async () => {
      const started = Date.now();
      log.info({ reason }, "shutting down: NOT_SERVING");
      healthState.setAll(ServingStatus.NOT_SERVING);
      await registration?.close();
      await sleep(config.SHUTDOWN_DELAY_MS);
      shutdownController.abort();
      streamController.abort(
        new ConnectError("the gateway is shutting down; reconnect", Code.Unavailable),
      );
      await drain();
      await mesh.close();
      await spec.close?.().catch((err) => log.error({ err }, "closing stores failed"));
      await metrics.close();
      etcd.close();
      log.info({ tookMs: Date.now() - started }, "stopped");
      await telemetry.shutdown().catch(() => {});
    })();
    return stopping;
  };

  return {
    name,
    port,
    http1Port,
    metricsPort: metrics.port,
    health: healthState,
    log,
    registration,
    get inflight() {
      return inflight;
    },
    shutdown,
  };
}

function listen(server: http.Server | http2.Http2Server, host: string, port: number) {
  return new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** main.ts's last line: starts the edge, drains on SIGTERM / SIGINT, exits 1 if it cannot start. */
export async function runEdgeService<C extends EdgeConfig>(
  spec: () => EdgeServiceSpec<C>,
): Promise<void> {
  let running: RunningEdge | undefined;
  try {
    running = await startEdgeService(spec());
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const service = running;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      service.log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    service.shutdown(signal).then(
      () => process.exit(0),
      (err) => {
        service.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("uncaughtException", (err) => {
    service.log.fatal({ err }, "uncaught exception");
    process.exit(1);
  });
}
