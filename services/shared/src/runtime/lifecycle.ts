/**
 * The life of every service process, whatever serves its calls (grpc-js inside
 * the mesh, connect-node at the edge): logs, tracing, etcd, the mesh, setup;
 * then listen, /metrics, register, SERVING; and the graceful shutdown
 * (NOT_SERVING → deregister → keep serving while clients notice → end streams
 * → drain in-flight calls → close stores → close the mesh).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Tracer } from "@opentelemetry/api";
import { Mesh } from "../mesh/mesh.ts";
import { type Registration, register } from "../mesh/registry.ts";
import { createEtcd, type Etcd3 } from "../stores/etcd.ts";
import { HealthState, ServingStatus } from "../transport/health.ts";
import { Cleanup } from "./cleanup.ts";
import type { BaseConfig } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import { type MetricsServer, serveMetrics } from "./metrics.ts";
import { startTelemetry } from "./telemetry.ts";
import { sleep } from "./time.ts";

/** What a service gets to build its routes: logging, tracing and the other services. */
export interface ServiceContext<C extends BaseConfig = BaseConfig> {
  readonly name: string;
  readonly config: C;
  readonly log: Logger;
  readonly tracer: Tracer;
  readonly etcd: Etcd3;
  readonly mesh: Mesh;
  /** Aborted when shutdown starts: long-lived work (consumers, watchers) should stop. */
  readonly shutdownSignal: AbortSignal;
  /**
   * Aborted with UNAVAILABLE when draining starts: server streams end with it, so
   * their clients reconnect to another instance (unary calls are left to finish).
   */
  readonly streamShutdownSignal: AbortSignal;
  /**
   * Where setup registers the closing of what it opens (stores, loops, watchers),
   * right after opening each: run newest first after in-flight calls drained, or
   * at once when start-up fails half-way.
   */
  readonly cleanup: Cleanup;
}

/** Serves a service's calls on some transport. */
export interface Listener {
  /** Binds and starts serving; answers the port to register in etcd and fields for the log. */
  listen(): Promise<{ port: number; fields?: Record<string, unknown> }>;
  /** Stops taking calls, waits for those in flight (at most `timeoutMs`), then cuts the rest. */
  drain(timeoutMs: number): Promise<void>;
}

export interface LifecycleSpec<C extends BaseConfig, R> {
  /** The service name as registered in etcd, e.g. "seckill-core". */
  name: string;
  config: C;
  /**
   * Builds the service's routes; may open stores and start background work,
   * closing each through `ctx.cleanup`.
   */
  setup(ctx: ServiceContext<C>): Promise<R> | R;
  /** Defaults to true: register in etcd so other services find this instance. */
  register?: boolean;
}

export interface Running {
  readonly name: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly health: HealthState;
  readonly log: Logger;
  readonly registration: Registration | undefined;
  /** Runs the graceful shutdown once; later calls wait for the same one. */
  shutdown(reason?: string): Promise<void>;
}

/**
 * What of an unexpected error may be logged: drivers attach more (mysql2 puts
 * the SQL with its values on `err.sql`), which can carry secrets.
 */
export function safeError(err: unknown): {
  type: string;
  message: string;
  code?: unknown;
  stack?: string;
} {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  return {
    type: err.name,
    message: err.message,
    code: (err as { code?: unknown }).code,
    stack: err.stack,
  };
}

/**
 * Starts a service: `bind` turns the routes from setup into a Listener on its
 * transport, registering its services (and grpc.health.v1) with `health`.
 */
export async function startLifecycle<C extends BaseConfig, R>(
  spec: LifecycleSpec<C, R>,
  bind: (routes: R, ctx: ServiceContext<C>, health: HealthState) => Listener,
): Promise<Running> {
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
  const ctx: ServiceContext<C> = {
    name,
    config,
    log,
    tracer: telemetry.tracer,
    etcd,
    mesh,
    shutdownSignal: shutdownController.signal,
    streamShutdownSignal: streamController.signal,
    cleanup: new Cleanup(),
  };

  // Whatever was opened is closed again if a later step fails.
  const undo = new Cleanup();
  undo.add(() => etcd.close());
  undo.add(() => mesh.close());
  const unwind = async () => {
    shutdownController.abort();
    await ctx.cleanup.run().catch(() => {});
    await undo.run().catch(() => {});
  };

  let listener: Listener;
  let port: number;
  let metrics: MetricsServer;
  let registration: Registration | undefined;
  const health = new HealthState();
  try {
    const routes = await spec.setup(ctx);
    listener = bind(routes, ctx, health);
    const listening = await listener.listen();
    port = listening.port;
    undo.add(() => listener.drain(0));
    metrics = await serveMetrics(config.HOST, config.METRICS_PORT, () => health.serving);
    undo.add(() => metrics.close());
    if (spec.register !== false) {
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
    }
    health.setAll(ServingStatus.SERVING);
    log.info({ port, metricsPort: metrics.port, ...listening.fields }, "serving");
  } catch (err) {
    await unwind();
    await telemetry.shutdown().catch(() => {});
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const shutdown = (reason = "shutdown") => {
    stopping ??= (async () => {
      const started = Date.now();
      log.info({ reason }, "shutting down: NOT_SERVING");
      health.setAll(ServingStatus.NOT_SERVING);
      await registration?.close();
      // Clients drop this instance when etcd tells them; keep serving until they have.
      await sleep(config.SHUTDOWN_DELAY_MS);
      shutdownController.abort();
      streamController.abort(
        new ConnectError(`${name} is shutting down; reconnect`, Code.Unavailable),
      );
      await listener.drain(config.SHUTDOWN_TIMEOUT_MS);
      // Background work may still call other services while it winds down: close the mesh last.
      await ctx.cleanup
        .run()
        .catch((err) => log.error({ err: safeError(err) }, "closing stores failed"));
      await mesh.close();
      await metrics.close();
      etcd.close();
      log.info({ tookMs: Date.now() - started }, "stopped");
      await telemetry.shutdown().catch(() => {});
    })();
    return stopping;
  };

  return { name, port, metricsPort: metrics.port, health, log, registration, shutdown };
}

/**
 * The composition root's last line: starts the service, shuts it down on
 * SIGTERM / SIGINT, and exits non-zero with a readable message when it cannot start.
 */
export async function runMain(start: () => Promise<Running>): Promise<void> {
  let running: Running;
  try {
    running = await start();
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
        service.log.error({ err: safeError(err) }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("uncaughtException", (err) => {
    service.log.fatal({ err: safeError(err) }, "uncaught exception");
    process.exit(1);
  });
}
