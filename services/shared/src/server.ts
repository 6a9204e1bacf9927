/**
 * What every service process does around its own routes: health, reflection,
 * metrics, tracing, etcd registration, and a graceful shutdown
 * (NOT_SERVING → deregister → wait for clients to notice → drain → close).
 */
import type { Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { Tracer } from "@opentelemetry/api";
import type { BaseConfig } from "./config.ts";
import { createEtcd, type Etcd3, sleep } from "./etcd.ts";
import { addRoutes, bindServer, type Routes, serverOptions } from "./grpc.ts";
import { Health, HealthState, ServingStatus } from "./health.ts";
import { serverErrorLog, serverMetrics, serverTracing } from "./interceptors.ts";
import { createLogger, type Logger } from "./log.ts";
import { Mesh } from "./mesh.ts";
import { type MetricsServer, serveMetrics } from "./metrics.ts";
import { addReflection } from "./reflection.ts";
import { type Registration, register } from "./registry.ts";
import { startTelemetry, type Telemetry } from "./telemetry.ts";

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
}

export interface ServiceSpec<C extends BaseConfig> {
  /** The service name as registered in etcd, e.g. "seckill-core". */
  name: string;
  config: C;
  /** Builds the service's routes; may open stores and start background work. */
  setup(ctx: ServiceContext<C>): Promise<Routes> | Routes;
  /** Closes what setup opened; runs after in-flight calls drained. */
  close?(): Promise<void>;
  /** Extra server interceptors, innermost last. */
  interceptors?: Interceptor[];
  /** Defaults to true: register in etcd so other services find this instance. */
  register?: boolean;
}

export interface RunningService {
  readonly name: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly health: HealthState;
  readonly log: Logger;
  readonly registration: Registration | undefined;
  /** Runs the graceful shutdown once; later calls wait for the same one. */
  shutdown(reason?: string): Promise<void>;
}

export async function startService<C extends BaseConfig>(
  spec: ServiceSpec<C>,
): Promise<RunningService> {
  const { config, name } = spec;
  const log = createLogger(name, config.LOG_LEVEL, config.INSTANCE_ID);
  const telemetry: Telemetry = startTelemetry({
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
  const ctx: ServiceContext<C> = {
    name,
    config,
    log,
    tracer: telemetry.tracer,
    etcd,
    mesh,
    shutdownSignal: shutdownController.signal,
  };

  let routes: Routes;
  try {
    routes = await spec.setup(ctx);
  } catch (err) {
    await mesh.close();
    etcd.close();
    await spec.close?.().catch(() => {});
    throw err;
  }
  const server = new grpc.Server(serverOptions);
  const served = addRoutes(server, routes, {
    interceptors: [
      serverTracing(telemetry.tracer),
      serverMetrics(),
      serverErrorLog(log),
      ...(spec.interceptors ?? []),
    ],
    shutdownSignal: shutdownController.signal,
    onInternalError: (err, method) =>
      log.error({ err, rpc: `${method.parent.typeName}/${method.name}` }, "handler threw"),
  });
  const health = new HealthState(served.map((s) => s.typeName));
  addRoutes(server, (router) => router.service(Health, health.impl()), {
    shutdownSignal: shutdownController.signal,
  });
  addReflection(server, [...served, Health]);

  const port = await bindServer(server, config.HOST, config.PORT);
  const metrics: MetricsServer = await serveMetrics(
    config.HOST,
    config.METRICS_PORT,
    () => health.serving,
  );

  let registration: Registration | undefined;
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
  log.info({ port, metricsPort: metrics.port, services: served.map((s) => s.typeName) }, "serving");

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
      await drain(server, config.SHUTDOWN_TIMEOUT_MS, log);
      // Background work may still call other services while it winds down: close the mesh last.
      await spec
        .close?.()
        .catch((err) => log.error({ err: safeError(err) }, "closing stores failed"));
      await mesh.close();
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
    metricsPort: metrics.port,
    health,
    log,
    registration,
    shutdown,
  };
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

/** Waits for in-flight calls to finish, then closes; forces it after `timeoutMs`. */
function drain(server: grpc.Server, timeoutMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log.warn({ timeoutMs }, "drain timed out; closing remaining calls");
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * The composition root's last line: starts the service, shuts it down on
 * SIGTERM / SIGINT, and exits non-zero with a readable message when it cannot start.
 */
export async function runService<C extends BaseConfig>(spec: () => ServiceSpec<C>): Promise<void> {
  let running: RunningService | undefined;
  try {
    running = await startService(spec());
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
