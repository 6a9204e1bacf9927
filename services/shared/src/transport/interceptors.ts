/**
 * Connect interceptors shared by every hop, server and client side, on both
 * transports (grpc-js inside the mesh, connect-node at the edge).
 */

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { Logger } from "../runtime/log.ts";
import { histogram, once } from "../runtime/metrics.ts";

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};
const headerSetter: TextMapSetter<Headers> = { set: (h, key, value) => h.set(key, value) };

const rpcName = (req: { service: { typeName: string }; method: { name: string } }) =>
  `${req.service.typeName}/${req.method.name}`;

export function codeOf(err: unknown): Code {
  return err instanceof ConnectError ? err.code : Code.Unknown;
}

export const codeName = (code: Code | 0) => (code === 0 ? "ok" : Code[code]);

/** Runs each step of an async iterable inside `ctx`, and calls `done` once when it ends. */
async function* traced<T>(
  iterable: AsyncIterable<T>,
  ctx: Context,
  done: (err?: unknown) => void,
): AsyncIterable<T> {
  const it = iterable[Symbol.asyncIterator]();
  try {
    for (;;) {
      const step = await context.with(ctx, () => it.next());
      if (step.done) break;
      yield step.value;
    }
    done();
  } catch (err) {
    done(err);
    throw err;
  } finally {
    await it.return?.();
  }
}

function endSpan(span: Span, err?: unknown) {
  if (err !== undefined) {
    const code = codeOf(err);
    span.setAttribute("rpc.grpc.status_code", code);
    if (code !== Code.Canceled) {
      span.recordException(err instanceof Error ? err : String(err));
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: err instanceof Error ? err.message : String(err),
      });
    }
  } else {
    span.setAttribute("rpc.grpc.status_code", 0);
  }
  span.end();
}

function spanInterceptor(tracer: Tracer, kind: SpanKind): Interceptor {
  return (next) => async (req) => {
    const parent =
      kind === SpanKind.SERVER
        ? propagation.extract(ROOT_CONTEXT, req.header, headerGetter)
        : context.active();
    const span = tracer.startSpan(
      rpcName(req),
      {
        kind,
        attributes: {
          "rpc.system": "grpc",
          "rpc.service": req.service.typeName,
          "rpc.method": req.method.name,
          ...(kind === SpanKind.CLIENT ? { "url.full": req.url } : {}),
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    if (kind === SpanKind.CLIENT) propagation.inject(ctx, req.header, headerSetter);
    try {
      const res = await context.with(ctx, () => next(req));
      if (!res.stream) {
        endSpan(span);
        return res;
      }
      return { ...res, message: traced(res.message, ctx, (err) => endSpan(span, err)) };
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  };
}

/** Server span per call, continuing the caller's W3C trace context from the headers. */
export const serverTracing = (tracer: Tracer) => spanInterceptor(tracer, SpanKind.SERVER);

/** Client span per attempt, with the W3C trace context injected into the request headers. */
export const clientTracing = (tracer: Tracer) => spanInterceptor(tracer, SpanKind.CLIENT);

const serverDuration = once("seckill_rpc_server_duration_seconds", () =>
  histogram("seckill_rpc_server_duration_seconds", "Served RPCs by method and status code.", [
    "service",
    "method",
    "code",
  ]),
);
const clientDuration = once("seckill_rpc_client_duration_seconds", () =>
  histogram(
    "seckill_rpc_client_duration_seconds",
    "RPCs sent, per attempt, by method and status code.",
    ["service", "method", "code"],
  ),
);

function metricsInterceptor(metric: typeof serverDuration): Interceptor {
  return (next) => async (req) => {
    const stop = metric.startTimer({ service: req.service.typeName, method: req.method.name });
    try {
      const res = await next(req);
      if (!res.stream) {
        stop({ code: "ok" });
        return res;
      }
      return {
        ...res,
        message: traced(res.message, context.active(), (err) =>
          stop({ code: codeName(err ? codeOf(err) : 0) }),
        ),
      };
    } catch (err) {
      stop({ code: codeName(codeOf(err)) });
      throw err;
    }
  };
}

export const serverMetrics = () => metricsInterceptor(serverDuration);
export const clientMetrics = () => metricsInterceptor(clientDuration);

/** Logs failed calls: server faults at error level, refusals (bad input, auth, limits) at debug. */
export function serverErrorLog(log: Logger): Interceptor {
  const faults = new Set([Code.Internal, Code.Unknown, Code.DataLoss, Code.Unavailable]);
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const code = codeOf(err);
      const fields = {
        rpc: rpcName(req),
        code: Code[code],
        err: err instanceof Error ? err.message : String(err),
      };
      if (faults.has(code)) log.error(fields, "rpc failed");
      else log.debug(fields, "rpc refused");
      throw err;
    }
  };
}
