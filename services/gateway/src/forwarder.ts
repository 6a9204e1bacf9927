/**
 * One generic forwarder for every public service: for a service descriptor,
 * the upstream's name in the mesh and a method → access map, it registers
 * every method on the edge router. A call passes the edge gate (policy.ts),
 * then is sent with the same descriptor over the mesh transport of the
 * upstream (SWRR, breakers, one retry elsewhere for idempotent methods,
 * tracing), carrying the caller's cancellation, what remains of the caller's
 * deadline, and the identity headers built from the verified token — never
 * anything identity-like from the client. Server streams are forwarded
 * message by message. Per-method hooks may answer at the edge
 * (short-circuit) or observe upstream answers.
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import {
  type Caller,
  CLIENT_IP_HEADER,
  checkBodyUserId,
  identityHeaders,
} from "../../shared/src/transport/identity.ts";
import { codeName, codeOf } from "../../shared/src/transport/interceptors.ts";
import { forwarded, refusals } from "./metrics.ts";
import {
  type Access,
  callerKey,
  clientIpKey,
  createEdgeGate,
  type EdgeGateOptions,
  type MethodPolicy,
  RETRY_AFTER_MS_HEADER,
} from "./policy.ts";

/** What a hook knows about the call. */
export interface CallInfo {
  caller: Caller | undefined;
  ip: string | undefined;
  method: DescMethod;
}

export interface UnaryHooks<I extends DescMessage, O extends DescMessage> {
  /** Returns an answer to give at the edge instead of forwarding, or undefined to forward. */
  shortCircuit?(req: MessageShape<I>, call: CallInfo): MessageInitShape<O> | undefined;
  /** Sees every upstream answer (not the short-circuited ones). */
  observe?(req: MessageShape<I>, res: MessageShape<O>, call: CallInfo): void;
}

type HooksOf<M> = M extends DescMethodUnary<infer I, infer O> ? UnaryHooks<I, O> : never;

/** A method's access, or its full policy. */
export type PolicyEntry = Access | (Partial<MethodPolicy> & { access: Access });

/** A public service forwarded to an upstream service of the mesh. */
export interface ForwardedService<S extends DescService = DescService> {
  service: S;
  /** The upstream's name in etcd, e.g. "seckill-app". */
  upstream: string;
  /**
   * Every method must be listed (a method added to the proto later does not
   * compile until someone decides who may call it).
   */
  policy: { [K in keyof S["method"]]: PolicyEntry };
  hooks?: { [K in keyof S["method"]]?: HooksOf<S["method"][K]> };
}

/** Keeps the map's exhaustiveness check while erasing the service type for lists. */
export const forward = <S extends DescService>(spec: ForwardedService<S>): ForwardedService =>
  spec as unknown as ForwardedService;

export function resolvePolicy(entry: PolicyEntry): MethodPolicy {
  const e = typeof entry === "string" ? { access: entry } : entry;
  return { ipBlacklist: true, rateLimited: true, ...e };
}

export interface ForwarderOptions {
  /** The transport of an upstream service (the mesh's balanced transport in production). */
  transport(upstream: string): Transport;
  gate: EdgeGateOptions;
  /** Upstream deadline of a unary call when the client's is longer or absent. */
  unaryTimeoutMs: number;
  /** Upstream deadline of a server stream when the client's is longer or absent. */
  streamTimeoutMs: number;
  /** Aborts forwarded streams when the server shuts down (clients reconnect elsewhere). */
  streamShutdownSignal?: AbortSignal;
}

/** Client headers passed on upstream (everything else is dropped), up to this length. */
const FORWARDED_CLIENT_HEADERS = ["x-request-id"];
const MAX_FORWARDED_HEADER_LENGTH = 128;
/** Upstream error metadata passed back to the client. */
const RETURNED_ERROR_HEADERS = [RETRY_AFTER_MS_HEADER];

/** Registers every method of each forwarded service on the router. */
export function registerForwarded(
  router: ConnectRouter,
  services: readonly ForwardedService[],
  opts: ForwarderOptions,
): void {
  for (const spec of services) {
    for (const method of spec.service.methods) {
      const entry = (spec.policy as Record<string, PolicyEntry | undefined>)[method.localName];
      if (entry === undefined) {
        // Fail closed even if the type check was bypassed.
        throw new Error(`${method.parent.typeName}/${method.name}: no access policy`);
      }
      const policy = resolvePolicy(entry);
      const hooks = (
        spec.hooks as Record<string, UnaryHooks<DescMessage, DescMessage>> | undefined
      )?.[method.localName];
      const requestGate = createEdgeGate(policy, opts.gate);
      switch (method.methodKind) {
        case "unary": {
          const impl = forwardUnary(method as DescMethodUnary, spec.upstream, policy, hooks, opts);
          rpc(router)(method, impl, { requestGate });
          break;
        }
        case "server_streaming": {
          const impl = forwardServerStream(
            method as DescMethodServerStreaming,
            spec.upstream,
            policy,
            opts,
          );
          const shutdown = opts.streamShutdownSignal;
          rpc(router)(method, impl, {
            requestGate,
            ...(shutdown ? { shutdownSignal: shutdown } : {}),
          });
          break;
        }
        default:
          throw new Error(
            `${method.parent.typeName}/${method.name}: ${method.methodKind} is not forwarded`,
          );
      }
    }
  }
}

/** router.rpc without the per-method typing (the methods here are only known at run time). */
const rpc = (router: ConnectRouter) =>
  router.rpc as (
    method: DescMethod,
    impl: unknown,
    options: Parameters<ConnectRouter["rpc"]>[2],
  ) => ConnectRouter;

function callInfo(ctx: HandlerContext, method: DescMethod): CallInfo {
  return { caller: ctx.values.get(callerKey), ip: ctx.values.get(clientIpKey), method };
}

/** The body's user_id (if the message has one) must be the caller's; identity never comes from it. */
function checkBody(method: DescMethod, policy: MethodPolicy, req: object, call: CallInfo): void {
  if (policy.access !== "user" || !call.caller) return;
  const field = method.input.field.userId;
  if (field?.fieldKind !== "scalar") return;
  const value = (req as { userId?: unknown }).userId;
  if (typeof value !== "string") return;
  try {
    checkBodyUserId(value, call.caller);
  } catch (err) {
    refusals.inc({ reason: "body_user_mismatch", service: method.parent.typeName });
    throw err;
  }
}

function upstreamHeaders(ctx: HandlerContext, call: CallInfo): Headers {
  const headers = new Headers(
    call.caller ? identityHeaders(call.caller) : call.ip ? { [CLIENT_IP_HEADER]: call.ip } : {},
  );
  for (const name of FORWARDED_CLIENT_HEADERS) {
    const value = ctx.requestHeader.get(name);
    if (value !== null && value.length <= MAX_FORWARDED_HEADER_LENGTH) headers.set(name, value);
  }
  return headers;
}

/** What is left of the client's deadline, capped by the edge's own. */
function upstreamTimeout(ctx: HandlerContext, cap: number): number {
  const remaining = ctx.timeoutMs();
  if (remaining === undefined) return cap;
  if (remaining <= 0)
    throw new ConnectError("deadline exceeded at the edge", Code.DeadlineExceeded);
  return Math.min(remaining, cap);
}

/** An upstream failure as the client sees it: same code, message and details; only safe metadata. */
function outward(err: unknown, ctx: HandlerContext): ConnectError {
  if (ctx.signal.aborted && ctx.signal.reason instanceof ConnectError) return ctx.signal.reason;
  const e = ConnectError.from(err);
  const metadata = new Headers();
  for (const name of RETURNED_ERROR_HEADERS) {
    const value = e.metadata.get(name);
    if (value !== null) metadata.set(name, value);
  }
  const out = new ConnectError(e.rawMessage, e.code, metadata);
  out.details.push(...e.details);
  return out;
}

function forwardUnary(
  method: DescMethodUnary,
  upstream: string,
  policy: MethodPolicy,
  hooks: UnaryHooks<DescMessage, DescMessage> | undefined,
  opts: ForwarderOptions,
) {
  const labels = { upstream, method: method.name };
  return async (req: MessageShape<DescMessage>, ctx: HandlerContext) => {
    const call = callInfo(ctx, method);
    checkBody(method, policy, req, call);
    const early = hooks?.shortCircuit?.(req, call);
    if (early !== undefined) return early;
    try {
      const res = await opts
        .transport(upstream)
        .unary(
          method,
          ctx.signal,
          upstreamTimeout(ctx, opts.unaryTimeoutMs),
          upstreamHeaders(ctx, call),
          req,
        );
      forwarded.inc({ ...labels, code: "ok" });
      hooks?.observe?.(req, res.message, call);
      return res.message;
    } catch (err) {
      forwarded.inc({ ...labels, code: codeName(codeOf(err)) });
      throw outward(err, ctx);
    }
  };
}

async function* once<T>(value: T): AsyncIterable<T> {
  yield value;
}

function forwardServerStream(
  method: DescMethodServerStreaming,
  upstream: string,
  policy: MethodPolicy,
  opts: ForwarderOptions,
) {
  const labels = { upstream, method: method.name };
  return async function* (
    req: MessageShape<DescMessage>,
    ctx: HandlerContext,
  ): AsyncIterable<MessageShape<DescMessage>> {
    const call = callInfo(ctx, method);
    checkBody(method, policy, req, call);
    let code = "ok";
    // Our own signal, so that an abandoned upstream stream is always ended (below).
    const upstreamCall = new AbortController();
    const onAbort = () => upstreamCall.abort(ctx.signal.reason);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    // Not every transport ends a pending read when its call is aborted: race it.
    const aborted = new Promise<never>((_, reject) =>
      upstreamCall.signal.addEventListener("abort", () => reject(upstreamCall.signal.reason), {
        once: true,
      }),
    );
    aborted.catch(() => {});
    let messages: AsyncIterator<MessageShape<DescMessage>> | undefined;
    let upstreamDone = false;
    try {
      const res = await opts
        .transport(upstream)
        .stream(
          method,
          upstreamCall.signal,
          upstreamTimeout(ctx, opts.streamTimeoutMs),
          upstreamHeaders(ctx, call),
          once(req),
        );
      messages = res.message[Symbol.asyncIterator]();
      for (;;) {
        const step = await Promise.race([messages.next(), aborted]);
        if (step.done) {
          upstreamDone = true;
          break;
        }
        yield step.value;
      }
    } catch (err) {
      code = codeName(codeOf(err));
      throw outward(err, ctx);
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      if (!upstreamDone) {
        // Ended early (client gone, error, shutdown): cancel upstream. connect's stream
        // iterators have no return(); one more next() on the aborted call ends it and
        // clears its deadline timer.
        if (code === "ok") code = "Canceled";
        upstreamCall.abort(new ConnectError("the stream was cancelled at the edge", Code.Canceled));
        void messages?.next().catch(() => {});
      }
      forwarded.inc({ ...labels, code });
    }
  };
}
