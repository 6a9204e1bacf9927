/**
 * Services under test: started in this process (its routes on the shared
 * server runtime, its metrics in this process's registry) or as a child
 * process from its main.ts (as Kubernetes runs it), behind one handle.
 *
 * A test of one service starts that service in-process; a test that needs
 * ANOTHER service starts it as a process, by name, so it never imports that
 * service's internals:
 *
 *   const core = await startAsProcess("seckill-core", serviceEnv({ etcd, redis }));
 *   const client = core.client(SeckillCoreService);
 */
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { type BaseConfig, baseConfigSchema, loadConfig } from "../runtime/config.ts";
import { type RunningService, type ServiceSpec, startService } from "../runtime/server.ts";
import { createGrpcTransport, type GrpcTransport } from "../transport/grpc-client.ts";
import type { Routes } from "../transport/grpc-server.ts";
import { type ServiceProcess, startServiceProcess } from "./service-process.ts";

export interface ServiceUnderTest {
  readonly port: number;
  readonly metricsPort: number;
  /** A client straight to this instance (not through the mesh); closed by stop(). */
  client<S extends DescService>(service: S): Client<S>;
  /** Graceful shutdown (in-process) or SIGTERM and wait for the exit (process). */
  stop(): Promise<void>;
}

export interface InProcessService extends ServiceUnderTest {
  readonly running: RunningService;
}

export interface ProcessService extends ServiceUnderTest {
  readonly process: ServiceProcess;
}

/** What the stores of a test are: anything with the stack servers' fields. */
export interface TestStores {
  etcd: { readonly endpoints: readonly string[] };
  redis?: { readonly url: string };
  mariadb?: { readonly uri: string };
}

/**
 * The env of a service under test: the stores' addresses, no shutdown delay,
 * logs at TEST_LOG_LEVEL (default silent); `extra` wins.
 */
export function serviceEnv(
  stores: TestStores,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ETCD_ENDPOINTS: stores.etcd.endpoints.join(","),
    ...(stores.redis ? { REDIS_URL: stores.redis.url } : {}),
    ...(stores.mariadb ? { MYSQL_URI: stores.mariadb.uri } : {}),
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    SHUTDOWN_DELAY_MS: "0",
    ...extra,
  };
}

function handle(port: number, metricsPort: number, stop: () => Promise<void>): ServiceUnderTest {
  const transports: GrpcTransport[] = [];
  return {
    port,
    metricsPort,
    client(service) {
      const transport = createGrpcTransport({ address: `127.0.0.1:${port}` });
      transports.push(transport);
      return createClient(service, transport);
    },
    async stop() {
      for (const t of transports.splice(0)) t.close();
      await stop();
    },
  };
}

/** Starts a service spec in this process (startService), as the service's own tests do. */
export async function startInProcess<C extends BaseConfig>(
  spec: ServiceSpec<C>,
): Promise<InProcessService> {
  const running = await startService(spec);
  return {
    ...handle(running.port, running.metricsPort, () => running.shutdown("test done")),
    running,
  };
}

/** Levels that would hide the "serving" line the process start waits for. */
const quieterThanInfo = new Set(["silent", "fatal", "error", "warn"]);

export interface AsProcessOptions {
  /** Entry file relative to the repository root; default services/<service>/src/main.ts. */
  entry?: string;
  readyTimeoutMs?: number;
  /** Also append the child's output to this file. */
  logFile?: string;
}

/**
 * Starts `services/<service>/src/main.ts` as a child process with `env` and
 * waits until it serves. LOG_LEVEL is raised to info at least: the child's
 * logs go to a pipe, and the start waits for its "serving" line.
 */
export async function startAsProcess(
  service: string,
  env: Record<string, string>,
  options: AsProcessOptions = {},
): Promise<ProcessService> {
  const level = env.LOG_LEVEL;
  const child = await startServiceProcess({
    entry: options.entry ?? `services/${service}/src/main.ts`,
    env: { ...env, LOG_LEVEL: level && !quieterThanInfo.has(level) ? level : "info" },
    readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
    logFile: options.logFile,
  });
  return { ...handle(child.port, child.metricsPort, () => child.stop()), process: child };
}

export interface FrontOptions<S extends DescService> {
  /** The name it registers in etcd, usually the name of the service it stands for. */
  name: string;
  service: S;
  /** Where calls go on to: a started service (or a port on 127.0.0.1). */
  target: { readonly port: number } | number;
  /** The front's own env (ETCD_ENDPOINTS, INSTANCE_ID, …), e.g. from serviceEnv(). */
  env: Record<string, string>;
  /** Server interceptors: see, count or fail the calls before they go on. */
  interceptors?: Interceptor[];
}

/**
 * An in-process stand-in that forwards every unary and server-streaming
 * call of `service` to `target` and answers what the target answers (its
 * errors included), with server interceptors around it. Registered in etcd
 * under `name`, it lets a test watch the calls a service under test makes to
 * a real other service running as a process (register that process in
 * another etcd so the mesh only finds the front).
 */
export async function startFront<S extends DescService>(
  opts: FrontOptions<S>,
): Promise<InProcessService> {
  const port = typeof opts.target === "number" ? opts.target : opts.target.port;
  const transport = createGrpcTransport({ address: `127.0.0.1:${port}` });
  const target = createClient(opts.service, transport) as unknown as Record<
    string,
    (req: unknown, options: { signal: AbortSignal; timeoutMs?: number }) => Promise<unknown>
  >;
  const impl: Record<string, unknown> = {};
  for (const method of opts.service.methods) {
    const call = target[method.localName]!;
    type Ctx = { signal: AbortSignal; timeoutMs(): number | undefined };
    const options = (ctx: Ctx) => ({ signal: ctx.signal, timeoutMs: ctx.timeoutMs() });
    if (method.methodKind === "unary")
      impl[method.localName] = (req: unknown, ctx: Ctx) => call(req, options(ctx));
    else if (method.methodKind === "server_streaming")
      impl[method.localName] = async function* (req: unknown, ctx: Ctx) {
        yield* call(req, options(ctx)) as unknown as AsyncIterable<unknown>;
      };
    // Client and bidi streams are not forwarded: the front answers UNIMPLEMENTED.
  }
  const routes: Routes = (router) => router.service(opts.service, impl as Partial<ServiceImpl<S>>);
  try {
    const front = await startInProcess({
      name: opts.name,
      config: loadConfig(baseConfigSchema, opts.env),
      setup: () => routes,
      interceptors: opts.interceptors,
    });
    return {
      ...front,
      async stop() {
        await front.stop();
        transport.close();
      },
    };
  } catch (err) {
    transport.close();
    throw err;
  }
}
