/**
 * A service inside the mesh: its routes served by grpc-js, with
 * grpc.health.v1, reflection and the shared server interceptors, inside the
 * common lifecycle (lifecycle.ts: tracing, etcd registration, /metrics,
 * graceful shutdown).
 */
import type { Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { addRoutes, bindServer, type Routes, serverOptions } from "../transport/grpc-server.ts";
import { Health } from "../transport/health.ts";
import { serverErrorLog, serverMetrics, serverTracing } from "../transport/interceptors.ts";
import { addReflection } from "../transport/reflection.ts";
import type { BaseConfig } from "./config.ts";
import {
  type LifecycleSpec,
  type Listener,
  type Running,
  runMain,
  type ServiceContext,
  safeError,
  startLifecycle,
} from "./lifecycle.ts";
import type { Logger } from "./log.ts";

export type { ServiceContext } from "./lifecycle.ts";
export { safeError };

export interface ServiceSpec<C extends BaseConfig> extends LifecycleSpec<C, Routes> {
  /** Extra server interceptors, innermost last. */
  interceptors?: Interceptor[];
}

export type RunningService = Running;

/** The grpc-js listener for a service's routes. */
function grpcListener<C extends BaseConfig>(
  routes: Routes,
  ctx: ServiceContext<C>,
  health: import("../transport/health.ts").HealthState,
  interceptors: Interceptor[],
): Listener {
  const { config, log, tracer } = ctx;
  const server = new grpc.Server(serverOptions);
  const served = addRoutes(server, routes, {
    interceptors: [serverTracing(tracer), serverMetrics(), serverErrorLog(log), ...interceptors],
    shutdownSignal: ctx.streamShutdownSignal,
    onInternalError: (err, method) =>
      log.error(
        { err: safeError(err), rpc: `${method.parent.typeName}/${method.name}` },
        "handler threw",
      ),
  });
  health.track(served.map((s) => s.typeName));
  // Probes are neither traced nor counted; Watch ends when draining starts.
  addRoutes(server, (router) => router.service(Health, health.impl()), {
    shutdownSignal: ctx.streamShutdownSignal,
  });
  if (config.REFLECTION) addReflection(server, [...served, Health]);
  return {
    listen: async () => ({
      port: await bindServer(server, config.HOST, config.PORT),
      fields: { services: served.map((s) => s.typeName) },
    }),
    drain: (timeoutMs) => drain(server, timeoutMs, log),
  };
}

/** Waits for in-flight calls to finish, then closes; forces it after `timeoutMs`. */
function drain(server: grpc.Server, timeoutMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (timeoutMs > 0) log.warn({ timeoutMs }, "drain timed out; closing remaining calls");
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function startService<C extends BaseConfig>(spec: ServiceSpec<C>): Promise<RunningService> {
  return startLifecycle(spec, (routes, ctx, health) =>
    grpcListener(routes, ctx, health, spec.interceptors ?? []),
  );
}

/**
 * The composition root's last line: starts the service, shuts it down on
 * SIGTERM / SIGINT, and exits non-zero with a readable message when it cannot start.
 */
export function runService<C extends BaseConfig>(spec: () => ServiceSpec<C>): Promise<void> {
  return runMain(() => startService(spec()));
}
