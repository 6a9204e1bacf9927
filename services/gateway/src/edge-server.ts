/**
 * The connect-node counterpart of shared/src/runtime/server.ts startService, for the
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
import { type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { type ConnectNodeAdapterOptions, connectNodeAdapter } from "@connectrpc/connect-node";
import type { BaseConfig } from "../../shared/src/runtime/config.ts";
import {
  type LifecycleSpec,
  type Listener,
  type Running,
  runMain,
  type ServiceContext,
  startLifecycle,
} from "../../shared/src/runtime/lifecycle.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import { Health, type HealthState } from "../../shared/src/transport/health.ts";
import {
  serverErrorLog,
  serverMetrics,
  serverTracing,
} from "../../shared/src/transport/interceptors.ts";
import { routeReflection } from "../../shared/src/transport/reflection.ts";
import { peerAddressKey } from "./client-ip.ts";
import { type CorsOptions, withCors } from "./cors.ts";
import type { StaticHandler } from "./static.ts";

export interface EdgeConfig extends BaseConfig {
  HTTP1_PORT: number;
  MAX_REQUEST_BYTES: number;
}

/** What setup returns: the routes, and what to stop them with. */
export interface EdgeRoutes {
  /** Registers the public services on the router (connect-node). */
  routes(router: ConnectRouter): void;
  cors?: CorsOptions;
  /** The web pages (static.ts): GET/HEAD of non-RPC paths, answered before the router. */
  web?: StaticHandler;
}

/** The lifecycle's context; `streamShutdownSignal` ends server streams with UNAVAILABLE at drain. */
export type EdgeServiceContext<C extends EdgeConfig> = ServiceContext<C>;

export interface EdgeServiceSpec<C extends EdgeConfig> extends LifecycleSpec<C, EdgeRoutes> {
  /** Extra server interceptors, innermost last. */
  interceptors?: Interceptor[];
}

export type RunningEdge = Running & {
  /** HTTP/1.1: Connect, gRPC-Web. */
  readonly http1Port: number;
};

type NodeReq = IncomingMessage | Http2ServerRequest;
type NodeRes = ServerResponse | Http2ServerResponse;

/**
 * What the edge serves and how: the listener below builds it for the gateway, and the
 * Connect conformance server (conformance/server.ts) builds it around the conformance
 * service, so the suite tests the very handler stack clients meet.
 */
export interface EdgeStackOptions extends Pick<ServiceContext<EdgeConfig>, "log" | "tracer"> {
  /** Registers every service served (public ones, health, reflection) on the router. */
  routes(router: ConnectRouter): void;
  /** Extra server interceptors after tracing, metrics and the error log, innermost last. */
  interceptors: Interceptor[];
  /** Largest request message accepted from clients (MAX_REQUEST_BYTES). */
  readMaxBytes: number;
  cors?: CorsOptions | undefined;
  web?: StaticHandler | undefined;
  /** connect's JSON options, e.g. a type registry for google.protobuf.Any fields. */
  jsonOptions?: ConnectNodeAdapterOptions["jsonOptions"];
}

/** The edge's two node servers around one connect-node handler, not listening yet. */
export interface EdgeStack {
  /** h2c: Connect, gRPC and gRPC-Web. */
  readonly h2: http2.Http2Server;
  /** HTTP/1.1: Connect and gRPC-Web. */
  readonly h1: http.Server;
  /** GOAWAY and no more keep-alive; wait until no call is in flight or the timeout; cut what is left. */
  drain(timeoutMs: number): Promise<void>;
}

export function createEdgeStack(opts: EdgeStackOptions): EdgeStack {
  const { log, tracer } = opts;
  const handler = connectNodeAdapter({
    routes: opts.routes,
    interceptors: [
      serverTracing(tracer),
      serverMetrics(),
      serverErrorLog(log),
      ...opts.interceptors,
    ],
    readMaxBytes: opts.readMaxBytes,
    ...(opts.jsonOptions ? { jsonOptions: opts.jsonOptions } : {}),
    contextValues: (req) =>
      createContextValues().set(peerAddressKey, req.socket?.remoteAddress ?? undefined),
  });

  let inflight = 0;
  const counted = (req: NodeReq, res: NodeRes) => {
    inflight++;
    res.once("close", () => inflight--);
    if (req instanceof http.IncomingMessage) {
      const socket = req.socket;
      res.once("finish", () => releaseUnread(req, socket));
    }
    handler(req, res);
  };
  const rpc = opts.cors ? withCors(opts.cors, counted) : counted;
  const web = opts.web;
  const serve = web
    ? (req: NodeReq, res: NodeRes) => {
        if (!web(req, res)) rpc(req, res);
      }
    : rpc;

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

  return {
    h2,
    h1,
    async drain(timeoutMs) {
      const started = Date.now();
      h2.close();
      h1.close();
      for (const session of sessions) session.close();
      while (inflight > 0 && Date.now() - started < timeoutMs) {
        h1.closeIdleConnections();
        await sleep(20);
      }
      if (inflight > 0 && timeoutMs > 0)
        log.warn({ inflight }, "drain timed out; closing remaining calls");
      for (const session of sessions) session.destroy();
      h1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/**
 * connect answers a request it refuses (a message over readMaxBytes, an extra message) without
 * reading the rest of the body. Over HTTP/1.1 that unread rest stalls the keep-alive connection:
 * the next request on it is never parsed, and fails with a reset when the idle timeout closes the
 * socket (found by the conformance suite, conformance/). Discard the rest once answered, as node
 * does with bodies nobody started reading.
 */
function releaseUnread(req: IncomingMessage, socket: Socket) {
  if (req.complete) return;
  if (req.destroyed) {
    // connect destroyed it mid-body: node's parser still pushes the rest into it, is refused,
    // and pauses the socket for good. `_dumped` is node's own mark of a body to drop.
    (req as IncomingMessage & { _dumped?: boolean })._dumped = true;
    socket.resume();
    return;
  }
  req.removeAllListeners("readable");
  req.removeAllListeners("data");
  // Flowing with no listener drops the data; the stream notices the "readable" listeners are
  // gone on the next tick, and ignores resume() until then.
  process.nextTick(() => req.resume());
}

/** h2c on PORT (registered in etcd) and HTTP/1.1 on HTTP1_PORT, both serving the connect router. */
function edgeListener<C extends EdgeConfig>(
  edge: EdgeRoutes,
  ctx: ServiceContext<C>,
  health: HealthState,
  interceptors: Interceptor[],
): Listener & { readonly http1Port: number } {
  const { config, log, tracer } = ctx;
  let http1Port = 0;
  const { h1, h2, drain } = createEdgeStack({
    log,
    tracer,
    interceptors,
    readMaxBytes: config.MAX_REQUEST_BYTES,
    cors: edge.cors,
    web: edge.web,
    routes(router) {
      edge.routes(router);
      health.track([...new Set(router.handlers.map((h) => h.service.typeName))]);
      // Probes are neither traced nor counted; Watch ends when draining starts.
      router.service(Health, health.impl(), {
        interceptors: [],
        shutdownSignal: ctx.streamShutdownSignal,
      });
      if (config.REFLECTION) {
        routeReflection(router, [...new Set(router.handlers.map((h) => h.service))]);
      }
    },
  });

  return {
    get http1Port() {
      return http1Port;
    },
    async listen() {
      const port = await listen(h2, config.HOST, config.PORT);
      http1Port = await listen(h1, config.HOST, config.HTTP1_PORT).catch((err) => {
        h2.close();
        throw err;
      });
      return { port, fields: { http1Port } };
    },
    drain,
  };
}

export async function startEdgeService<C extends EdgeConfig>(
  spec: EdgeServiceSpec<C>,
): Promise<RunningEdge> {
  let listener: ReturnType<typeof edgeListener> | undefined;
  const running = await startLifecycle(spec, (edge, ctx, health) => {
    listener = edgeListener(edge, ctx, health, spec.interceptors ?? []);
    return listener;
  });
  return { ...running, http1Port: listener!.http1Port };
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
export function runEdgeService<C extends EdgeConfig>(
  spec: () => EdgeServiceSpec<C>,
): Promise<void> {
  return runMain(() => startEdgeService(spec()));
}
