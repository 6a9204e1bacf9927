/**
 * The conformance server that `connectconformance --mode server` starts (conformance/run.ts):
 * connectrpc.conformance.v1.ConformanceService served by the gateway's own edge stack
 * (createEdgeStack of services/gateway/src/edge-server.ts: the same connect-node adapter,
 * tracing / metrics / error-log interceptors, request size limit, CORS wrapper, h2c and
 * HTTP/1.1 servers), with every call passing the edge gate of a public, rate-limited method.
 *
 * Protocol: reads one size-prefixed ServerCompatRequest from stdin, starts both servers on
 * 127.0.0.1, answers a size-prefixed ServerCompatResponse on stdout with the port of the HTTP
 * version asked for, serves until SIGTERM. Logs go to stderr (CONFORMANCE_LOG_LEVEL, default
 * fatal: the suite provokes errors on purpose).
 */
import type { AddressInfo } from "node:net";
import {
  create,
  createRegistry,
  type DescMessage,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { type Any, anyPack } from "@bufbuild/protobuf/wkt";
import { type Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { pino } from "pino";
import { gatewayConfigSchema } from "../services/gateway/src/config.ts";
import { createEdgeStack } from "../services/gateway/src/edge-server.ts";
import { EdgeLimiter } from "../services/gateway/src/limits.ts";
import { createEdgeGate, RETRY_AFTER_MS_HEADER } from "../services/gateway/src/policy.ts";
import { startTelemetry } from "../services/shared/src/runtime/telemetry.ts";
import { sleep } from "../services/shared/src/runtime/time.ts";
import { HTTPVersion } from "./gen/ts/connectrpc/conformance/v1/config_pb.ts";
import {
  ServerCompatRequestSchema,
  ServerCompatResponseSchema,
} from "./gen/ts/connectrpc/conformance/v1/server_compat_pb.ts";
import {
  BidiStreamRequestSchema,
  ClientStreamRequestSchema,
  type Error as ConformanceError,
  ConformancePayload_ConnectGetInfoSchema,
  type ConformancePayload_RequestInfo,
  ConformancePayload_RequestInfoSchema,
  ConformanceService,
  type Header,
  HeaderSchema,
  IdempotentUnaryRequestSchema,
  ServerStreamRequestSchema,
  UnaryRequestSchema,
  type UnaryResponseDefinition,
} from "./gen/ts/connectrpc/conformance/v1/service_pb.ts";

/** The gateway's defaults, read from its config schema so they cannot drift. */
const gatewayDefaults = {
  maxRequestBytes: gatewayConfigSchema.shape.MAX_REQUEST_BYTES.parse(undefined),
  corsMaxAgeSeconds: gatewayConfigSchema.shape.CORS_MAX_AGE_SECONDS.parse(undefined),
};

/** Request types echoed back in google.protobuf.Any (the JSON codec needs them by name). */
const registry = createRegistry(
  UnaryRequestSchema,
  IdempotentUnaryRequestSchema,
  ServerStreamRequestSchema,
  ClientStreamRequestSchema,
  BidiStreamRequestSchema,
  ConformancePayload_RequestInfoSchema,
);

function toHeaders(headers: Headers): Header[] {
  const out: Header[] = [];
  headers.forEach((value, name) => {
    out.push(create(HeaderSchema, { name, value: [value] }));
  });
  return out;
}

function appendHeaders(target: Headers, headers: readonly Header[] | undefined) {
  for (const h of headers ?? []) for (const value of h.value) target.append(h.name, value);
}

function requestInfo(ctx: HandlerContext, requests: Any[]): ConformancePayload_RequestInfo {
  const timeoutMs = ctx.timeoutMs();
  const info = create(ConformancePayload_RequestInfoSchema, {
    requestHeaders: toHeaders(ctx.requestHeader),
    requests,
    ...(timeoutMs !== undefined ? { timeoutMs: BigInt(timeoutMs) } : {}),
  });
  if (ctx.requestMethod === "GET") {
    const query: Header[] = [];
    for (const [name, value] of new URL(ctx.url).searchParams) {
      const seen = query.find((h) => h.name === name);
      if (seen) seen.value.push(value);
      else query.push(create(HeaderSchema, { name, value: [value] }));
    }
    info.connectGetInfo = create(ConformancePayload_ConnectGetInfoSchema, { queryParams: query });
  }
  return info;
}

/** The error a definition asks for, with the request info (when given) as one more detail. */
function errorOf(err: ConformanceError, info?: ConformancePayload_RequestInfo): ConnectError {
  const e = new ConnectError(err.message ?? "", err.code as number as Code);
  const details = [...err.details];
  if (info) details.push(anyPack(ConformancePayload_RequestInfoSchema, info));
  for (const d of details) {
    e.details.push({ type: d.typeUrl.slice(d.typeUrl.lastIndexOf("/") + 1), value: d.value });
  }
  return e;
}

const pack = <D extends DescMessage>(desc: D, msg: MessageShape<D>) => anyPack(desc, msg);

async function unaryAnswer(
  def: UnaryResponseDefinition | undefined,
  requests: Any[],
  ctx: HandlerContext,
) {
  appendHeaders(ctx.responseHeader, def?.responseHeaders);
  appendHeaders(ctx.responseTrailer, def?.responseTrailers);
  const info = requestInfo(ctx, requests);
  if (def?.responseDelayMs) await sleep(def.responseDelayMs);
  if (def?.response.case === "error") throw errorOf(def.response.value, info);
  return {
    payload: {
      requestInfo: info,
      ...(def?.response.case === "responseData" ? { data: def.response.value } : {}),
    },
  };
}

async function readSizePrefixed(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  let buf = Buffer.alloc(0);
  for await (const chunk of stream) {
    buf = Buffer.concat([buf, chunk as Buffer]);
    if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      return buf.subarray(4, 4 + buf.readUInt32BE(0));
    }
  }
  throw new Error("stdin ended before a whole ServerCompatRequest");
}

function writeSizePrefixed(bytes: Uint8Array) {
  const size = Buffer.alloc(4);
  size.writeUInt32BE(bytes.byteLength);
  process.stdout.write(Buffer.concat([size, bytes]));
}

const req = fromBinary(ServerCompatRequestSchema, await readSizePrefixed(process.stdin));
if (req.useTls) throw new Error("the edge serves plain text (TLS ends at the load balancer)");
if (
  req.httpVersion !== HTTPVersion.HTTP_VERSION_1 &&
  req.httpVersion !== HTTPVersion.HTTP_VERSION_2
)
  throw new Error(`HTTP version ${HTTPVersion[req.httpVersion]} is not served by the edge`);

const log = pino({ level: process.env.CONFORMANCE_LOG_LEVEL ?? "fatal" }, pino.destination(2));
const { tracer } = startTelemetry({
  service: "conformance",
  instance: `conformance-${process.pid}`,
  version: "conformance",
  exporter: "none",
});

// The gate of a public, rate-limited gateway method; the limits are off (the suite is one
// client sending hundreds of calls), the code path is the gateway's.
const limiter = new EdgeLimiter({
  ip: { ratePerSecond: 0, burst: 1, maxKeys: 100 },
  global: { ratePerSecond: 0, burst: 1 },
  user: { ratePerSecond: 0, burst: 1, maxKeys: 100 },
});
const gate = createEdgeGate(
  { access: "public", ipBlacklist: true, rateLimited: true },
  {
    verifier: {
      verify: () => Promise.reject(new Error("public methods verify no token")),
    },
    limiter,
    blacklist: { isBlocked: () => false },
    trustedProxyHops: 0,
  },
);

const stack = createEdgeStack({
  log,
  tracer,
  interceptors: [],
  readMaxBytes: req.messageReceiveLimit || gatewayDefaults.maxRequestBytes,
  cors: {
    allowedOrigins: ["*"],
    maxAgeSeconds: gatewayDefaults.corsMaxAgeSeconds,
    extraAllowedHeaders: ["Authorization", "X-Request-Id"],
    extraExposedHeaders: [RETRY_AFTER_MS_HEADER],
  },
  jsonOptions: { registry },
  routes(router) {
    // Client and bidi streams are left unimplemented: the edge forwards neither.
    router.service(ConformanceService, {
      async unary(request, ctx) {
        await gate(ctx);
        return unaryAnswer(request.responseDefinition, [pack(UnaryRequestSchema, request)], ctx);
      },
      async idempotentUnary(request, ctx) {
        await gate(ctx);
        return unaryAnswer(
          request.responseDefinition,
          [pack(IdempotentUnaryRequestSchema, request)],
          ctx,
        );
      },
      async *serverStream(request, ctx) {
        await gate(ctx);
        const def = request.responseDefinition;
        appendHeaders(ctx.responseHeader, def?.responseHeaders);
        appendHeaders(ctx.responseTrailer, def?.responseTrailers);
        const info = requestInfo(ctx, [pack(ServerStreamRequestSchema, request)]);
        let sent = 0;
        for (const data of def?.responseData ?? []) {
          if (def?.responseDelayMs) await sleep(def.responseDelayMs);
          yield { payload: { data, ...(sent === 0 ? { requestInfo: info } : {}) } };
          sent++;
        }
        if (def?.error) throw errorOf(def.error, sent === 0 ? info : undefined);
      },
    });
  },
});

function listen(server: typeof stack.h1 | typeof stack.h2): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}
const h2Port = await listen(stack.h2);
const h1Port = await listen(stack.h1);
process.once("SIGTERM", () => {
  limiter.close();
  void stack.drain(1000).then(() => process.exit(0));
});

writeSizePrefixed(
  toBinary(
    ServerCompatResponseSchema,
    create(ServerCompatResponseSchema, {
      host: "127.0.0.1",
      port: req.httpVersion === HTTPVersion.HTTP_VERSION_1 ? h1Port : h2Port,
    }),
  ),
);
