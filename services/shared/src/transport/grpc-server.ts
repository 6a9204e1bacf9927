/**
 * The server side of the grpc-js adapter (see `grpc-codec.ts`): serves
 * connect-es `ServiceImpl`s through connect-es `Interceptor`s on a grpc-js
 * server. Unary and server-streaming methods are served; client and bidi
 * streaming are refused when the routes are added.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  isMessage,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  createHandlerContext,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
  type ServiceImplSpec,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { runWithDeadline } from "./deadline.ts";
import {
  grpcServiceDefinition,
  headersToMetadata,
  metadataToHeaders,
  toServiceError,
  UndecodableRequest,
} from "./grpc-codec.ts";

// ---------------------------------------------------------------------------
// Router

/** Collects service implementations, like connect's `ConnectRouter`. */
export interface GrpcRouter {
  service<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): this;
  readonly specs: readonly ServiceImplSpec[];
}

export type Routes = (router: GrpcRouter) => void;

export function createGrpcRouter(): GrpcRouter {
  const specs: ServiceImplSpec[] = [];
  return {
    specs,
    service(service, impl) {
      specs.push(createServiceImplSpec(service, impl));
      return this;
    },
  };
}

// ---------------------------------------------------------------------------
// Handlers

export interface GrpcHandlerOptions {
  interceptors?: Interceptor[];
  /** Aborted when the server starts draining: ends server streams, leaves unary calls alone. */
  shutdownSignal?: AbortSignal;
  /** Called with an error that is not a ConnectError; the caller sees INTERNAL. */
  onInternalError?: (err: unknown, method: DescMethod) => void;
  contextValues?: () => ContextValues;
}

/** The method kinds served here. */
type ServedSpec = Extract<MethodImplSpec, { kind: "unary" | "server_streaming" }>;

type AnyFn = (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>;

type Request = MessageShape<DescMessage> | UndecodableRequest;

/** A grpc-js call of either kind served here: both have the request message at once. */
type ServerCall =
  | grpc.ServerUnaryCall<Request, unknown>
  | grpc.ServerWritableStream<Request, unknown>;

// Abort reasons shared by every call: building an error (and its stack) per call costs CPU on the hot path.
const clientCancelled = new ConnectError("call cancelled by the client", Code.Canceled);
const callEnded = new ConnectError("call ended", Code.Canceled);

/** The handler context of a request built here, for the innermost `next`. */
const contexts = new WeakMap<object, HandlerContext>();

function applyInterceptors(next: AnyFn, interceptors: Interceptor[] = []): AnyFn {
  return interceptors.reduceRight((fn, interceptor) => interceptor(fn), next);
}

function asConnectError(err: unknown, method: DescMethod, opts: GrpcHandlerOptions): ConnectError {
  if (err instanceof ConnectError) return err;
  opts.onInternalError?.(err, method);
  return new ConnectError("internal error", Code.Internal);
}

function outputMessage<O extends DescMessage>(
  desc: O,
  value: MessageInitShape<O>,
): MessageShape<O> {
  return isMessage(value, desc) ? (value as MessageShape<O>) : create(desc, value);
}

function deadlineOf(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

function hasEntries(headers: Headers): boolean {
  for (const _ of headers.keys()) return true;
  return false;
}

async function* single<T>(value: T): AsyncIterable<T> {
  yield value;
}

/** A response as the interceptors see it: the context's headers and trailers, and the output. */
function response(
  method: DescMethod,
  ctx: HandlerContext,
  stream: boolean,
  message: unknown,
): UnaryResponse | StreamResponse {
  return {
    stream,
    service: method.parent,
    method,
    header: ctx.responseHeader,
    trailer: ctx.responseTrailer,
    message,
  } as UnaryResponse | StreamResponse;
}

/** The innermost `next` of the interceptor chain: calls the implementation with the request's context. */
function callImpl(spec: ServedSpec): AnyFn {
  const { method } = spec;
  if (spec.kind === "unary") {
    return async (req) => {
      const ctx = contexts.get(req) as HandlerContext;
      const output = await spec.impl((req as UnaryRequest).message, ctx);
      return response(method, ctx, false, outputMessage(method.output, output));
    };
  }
  const serverStreaming = spec;
  return async (req) => {
    const ctx = contexts.get(req) as HandlerContext;
    let first: MessageShape<DescMessage> | undefined;
    for await (const m of (req as StreamRequest).message) {
      first = m;
      break;
    }
    if (first === undefined)
      throw new ConnectError("missing request message", Code.InvalidArgument);
    const request = first;
    async function* output() {
      for await (const value of serverStreaming.impl(request, ctx))
        yield outputMessage(method.output, value);
    }
    return response(method, ctx, true, output());
  };
}

/**
 * The grpc-js handler of one unary or server-streaming method: grpc-js calls it
 * with `(call, callback)` for a unary method and with `(call)` for a
 * server-streaming one. Refusing an undecodable request, the handler context
 * (deadline, cancellation, headers), the connect request and the interceptor
 * chain are the same for both; only how the response goes back differs.
 */
function methodHandler(spec: ServedSpec, opts: GrpcHandlerOptions) {
  const { method } = spec;
  const streaming = spec.kind === "server_streaming";
  const chain = applyInterceptors(callImpl(spec), opts.interceptors);
  const shutdownSignal = streaming ? opts.shutdownSignal : undefined;

  return (call: ServerCall, callback?: grpc.sendUnaryData<unknown>): void => {
    const request = call.request;
    if (request instanceof UndecodableRequest) {
      const status = toServiceError(
        new ConnectError(`malformed request: ${request.reason}`, Code.InvalidArgument),
      );
      if (callback) callback(status);
      else call.emit("error", status);
      return;
    }
    const deadline = deadlineOf(call);
    const cancelled = new AbortController();
    // grpc-js emits "cancelled" after every finished call too: only an unanswered call is cancelled.
    let answered = false;
    call.on("cancelled", () => {
      if (!answered) cancelled.abort(clientCancelled);
    });
    const ctx = createHandlerContext({
      service: method.parent,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: call.getPath(),
      timeoutMs: deadline === undefined ? undefined : deadline - Date.now(),
      requestSignal: cancelled.signal,
      shutdownSignal,
      requestHeader: metadataToHeaders(call.metadata),
      contextValues: opts.contextValues?.() ?? createContextValues(),
    });
    const req = {
      stream: streaming,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: ctx.url,
      signal: ctx.signal,
      header: ctx.requestHeader,
      contextValues: ctx.values,
      message: streaming ? single(request) : request,
    } as UnaryRequest | StreamRequest;
    contexts.set(req, ctx);

    if (callback) {
      // Unary: one message back through the callback, with the trailers.
      runWithDeadline(deadline, () => chain(req))
        .then(
          (res) => {
            if (hasEntries(res.header)) call.sendMetadata(headersToMetadata(res.header));
            answered = true;
            callback(null, res.message, headersToMetadata(res.trailer));
          },
          (err) => {
            answered = true;
            callback(toServiceError(asConnectError(err, method, opts)));
          },
        )
        // Ends the context's deadline timer; work still tied to ctx.signal stops with the call.
        .finally(() => ctx.abort(callEnded));
      return;
    }
    // Server streaming: written under the deadline too, since the implementation runs as it is read.
    const stream = call as grpc.ServerWritableStream<Request, unknown>;
    runWithDeadline(deadline, async () => {
      const res = await chain(req);
      stream.sendMetadata(headersToMetadata(res.header));
      for await (const message of res.message as AsyncIterable<unknown>) {
        if (stream.cancelled) return;
        if (!stream.write(message)) await new Promise((resolve) => stream.once("drain", resolve));
      }
      answered = true;
      stream.end(headersToMetadata(res.trailer));
    })
      .catch((err) => {
        answered = true;
        if (!stream.cancelled)
          stream.emit("error", toServiceError(asConnectError(err, method, opts)));
      })
      .finally(() => ctx.abort(callEnded));
  };
}

// ---------------------------------------------------------------------------
// Server

/** Adds every routed service to a grpc-js server; returns the services added. */
export function addRoutes(
  server: grpc.Server,
  routes: Routes,
  opts: GrpcHandlerOptions = {},
): DescService[] {
  const router = createGrpcRouter();
  routes(router);
  for (const spec of router.specs) {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [localName, methodSpec] of Object.entries(spec.methods)) {
      if (methodSpec.kind !== "unary" && methodSpec.kind !== "server_streaming") {
        throw new Error(
          `${spec.service.typeName}/${methodSpec.method.name}: ${methodSpec.kind} is not supported`,
        );
      }
      impl[localName] = methodHandler(methodSpec, opts) as grpc.UntypedHandleCall;
    }
    server.addService(grpcServiceDefinition(spec.service), impl);
  }
  return router.specs.map((s) => s.service);
}

export const serverOptions: grpc.ServerOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
};

export function bindServer(server: grpc.Server, host: string, port: number): Promise<number> {
  const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
}
