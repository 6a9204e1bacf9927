/**
 * The mesh's client side: a connect `Transport` that spreads calls over the
 * live instances of one service with smooth weighted round-robin, guards each
 * instance with its own circuit breaker, and retries once on another instance
 * when the call is idempotent (declared with `idempotency_level` in the proto).
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodStreaming,
  DescMethodUnary,
  MessageInitShape,
} from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type ContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import CircuitBreaker from "opossum";
import type { Logger } from "../runtime/log.ts";
import { counter, gauge, once } from "../runtime/metrics.ts";
import { sleep } from "../runtime/time.ts";
import { createGrpcTransport } from "../transport/grpc-client.ts";
import { fromServiceError } from "../transport/grpc-codec.ts";
import type { InstanceSource } from "./discovery.ts";
import { instanceAddress, type ServiceInstance } from "./registry.ts";
import { SmoothWeightedRoundRobin } from "./swrr.ts";

const picks = once("seckill_mesh_picks_total", () =>
  counter("seckill_mesh_picks_total", "Calls sent to each instance by the balancer.", [
    "service",
    "instance",
  ]),
);
const retries = once("seckill_mesh_retries_total", () =>
  counter("seckill_mesh_retries_total", "Idempotent calls retried on another instance.", [
    "service",
    "method",
  ]),
);
const breakerState = once("seckill_mesh_breaker_state", () =>
  gauge("seckill_mesh_breaker_state", "Breaker per instance: 0 closed, 1 half-open, 2 open.", [
    "service",
    "instance",
  ]),
);

/** Codes that say nothing about the instance's health: the caller's own mistakes and refusals. */
const notInstanceFaults = new Set<Code>([
  Code.Canceled,
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.FailedPrecondition,
  Code.Aborted,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
]);

export interface BreakerOptions {
  /** A call slower than this is aborted and counts as a failure. */
  timeoutMs: number;
  errorThresholdPercentage: number;
  /** How long an open breaker waits before letting one trial call through (half-open). */
  resetTimeoutMs: number;
  /** Calls in the rolling window before the breaker may open at all. */
  volumeThreshold: number;
  rollingWindowMs: number;
}

export const defaultBreakerOptions: BreakerOptions = {
  timeoutMs: 5000,
  errorThresholdPercentage: 50,
  resetTimeoutMs: 1000,
  volumeThreshold: 5,
  rollingWindowMs: 10_000,
};

export interface MeshTransportOptions {
  source: InstanceSource;
  log: Logger;
  interceptors?: Interceptor[];
  breaker?: Partial<BreakerOptions>;
  /** Builds the transport of one instance; grpc-js by default. */
  connect?: (
    instance: ServiceInstance,
    interceptors: Interceptor[],
  ) => Transport & { close?(): void };
}

interface Endpoint {
  readonly key: string;
  readonly address: string;
  instance: ServiceInstance;
  readonly transport: Transport & { close?(): void };
  readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
  /** Calls under way; a retired endpoint closes its connection when they are done. */
  inflight: number;
  retired: boolean;
}

export interface MeshTransport extends Transport {
  readonly service: string;
  /** Per instance: breaker state and calls picked so far. */
  stats(): {
    instance: string;
    address: string;
    weight: number;
    state: "closed" | "open" | "half-open";
  }[];
  close(): void;
}

type HeadersInit = ConstructorParameters<typeof Headers>[0];

/** How long a call waits for the first list of instances before it fails UNAVAILABLE. */
const firstDiscoveryWaitMs = 2000;

const isIdempotent = (method: DescMethod) => method.idempotency !== Idempotency.IDEMPOTENCY_UNKNOWN;

export function createMeshTransport(opts: MeshTransportOptions): MeshTransport {
  const service = opts.source.service;
  const breakerOptions = { ...defaultBreakerOptions, ...opts.breaker };
  const connect =
    opts.connect ??
    ((instance: ServiceInstance, interceptors: Interceptor[]) =>
      createGrpcTransport({ address: instanceAddress(instance), interceptors }));
  const endpoints = new Map<string, Endpoint>();
  const rr = new SmoothWeightedRoundRobin<Endpoint>();

  const newEndpoint = (instance: ServiceInstance): Endpoint => {
    const key = instance.id;
    const breaker = new CircuitBreaker((run: () => Promise<unknown>) => run(), {
      timeout: breakerOptions.timeoutMs,
      errorThresholdPercentage: breakerOptions.errorThresholdPercentage,
      resetTimeout: breakerOptions.resetTimeoutMs,
      volumeThreshold: breakerOptions.volumeThreshold,
      rollingCountTimeout: breakerOptions.rollingWindowMs,
      rollingCountBuckets: 10,
      errorFilter: (err: unknown) => err instanceof ConnectError && notInstanceFaults.has(err.code),
    });
    const labels = { service, instance: key };
    breakerState.set(labels, 0);
    breaker.on("open", () => {
      breakerState.set(labels, 2);
      opts.log.warn({ service, instance: key }, "breaker opened");
    });
    breaker.on("halfOpen", () => breakerState.set(labels, 1));
    breaker.on("close", () => {
      breakerState.set(labels, 0);
      opts.log.info({ service, instance: key }, "breaker closed");
    });
    return {
      key,
      address: instanceAddress(instance),
      instance,
      transport: connect(instance, opts.interceptors ?? []),
      breaker,
      inflight: 0,
      retired: false,
    };
  };

  const update = (instances: readonly ServiceInstance[]) => {
    const seen = new Set<string>();
    for (const instance of instances) {
      seen.add(instance.id);
      const existing = endpoints.get(instance.id);
      if (existing && existing.address === instanceAddress(instance)) {
        if (existing.instance.weight !== instance.weight) {
          existing.instance = instance;
        }
        continue;
      }
      if (existing) retire(existing);
      endpoints.set(instance.id, newEndpoint(instance));
    }
    for (const endpoint of endpoints.values()) if (!seen.has(endpoint.key)) retire(endpoint);
    rr.update(
      [...endpoints.values()].map((e) => ({ key: e.key, weight: e.instance.weight, value: e })),
    );
  };

  const retire = (endpoint: Endpoint) => {
    endpoints.delete(endpoint.key);
    endpoint.retired = true;
    breakerState.remove({ service, instance: endpoint.key });
    // Closing the channel now would refuse calls picked a moment ago: wait for them.
    if (endpoint.inflight === 0) closeEndpoint(endpoint);
  };

  const closeEndpoint = (endpoint: Endpoint) => {
    endpoint.breaker.shutdown();
    endpoint.transport.close?.();
  };

  const unsubscribe = opts.source.subscribe(update);

  const pick = (exclude: ReadonlySet<string>): Endpoint => {
    // An open breaker lets no call through; a half-open one lets its trial call.
    const endpoint = rr.pick(
      (e) => !exclude.has(e.key) && (!e.breaker.opened || e.breaker.halfOpen),
    );
    if (endpoint === undefined) {
      const why =
        endpoints.size === 0 ? "no instance is registered" : "every instance is unavailable";
      throw new ConnectError(`${service}: ${why}`, Code.Unavailable);
    }
    picks.inc({ service, instance: endpoint.key });
    return endpoint;
  };

  /** Runs one attempt through the instance's breaker; a breaker timeout aborts the call. */
  const attempt = async <T>(
    endpoint: Endpoint,
    signal: AbortSignal | undefined,
    run: (signal: AbortSignal) => Promise<T>,
    streaming: boolean,
  ): Promise<T> => {
    const abort = new AbortController();
    endpoint.inflight++;
    const onAbort = () => abort.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return (await endpoint.breaker.fire(() => run(abort.signal))) as T;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === "ETIMEDOUT") {
        const timeout = new ConnectError(
          `${service} instance ${endpoint.key} did not answer within ${breakerOptions.timeoutMs} ms`,
          Code.DeadlineExceeded,
        );
        abort.abort(timeout);
        throw timeout;
      }
      if (code === "EOPENBREAKER") {
        throw new ConnectError(
          `${service} instance ${endpoint.key} is unavailable (breaker open)`,
          Code.Unavailable,
        );
      }
      throw err instanceof ConnectError ? err : fromServiceError(err);
    } finally {
      // A stream outlives this attempt: the caller's signal must still be able to end it.
      if (!streaming) signal?.removeEventListener("abort", onAbort);
      if (--endpoint.inflight === 0 && endpoint.retired) closeEndpoint(endpoint);
    }
  };

  /** Picks instances and retries once elsewhere when the method allows it and the failure is transient. */
  const withRetry = async <T>(
    method: DescMethod,
    signal: AbortSignal | undefined,
    run: (endpoint: Endpoint, signal: AbortSignal) => Promise<T>,
  ): Promise<T> => {
    if (endpoints.size === 0 && opts.source.ready) {
      // A process's first call may come before discovery's first read of etcd.
      await Promise.race([opts.source.ready(), sleep(firstDiscoveryWaitMs, signal)]);
    }
    const tried = new Set<string>();
    const maxAttempts = isIdempotent(method) ? 2 : 1;
    for (let n = 1; ; n++) {
      const endpoint = pick(tried);
      tried.add(endpoint.key);
      try {
        return await attempt(
          endpoint,
          signal,
          (s) => run(endpoint, s),
          method.methodKind !== "unary",
        );
      } catch (err) {
        const transient =
          err instanceof ConnectError &&
          (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded);
        if (n >= maxAttempts || !transient || signal?.aborted || tried.size >= endpoints.size)
          throw err;
        retries.inc({ service, method: method.name });
        opts.log.debug(
          { service, method: method.name, instance: endpoint.key, err: String(err) },
          "retrying on another instance",
        );
      }
    }
  };

  return {
    service,
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      return withRetry(method, signal, (e, s) =>
        e.transport.unary(method, s, timeoutMs, new Headers(header), input, contextValues),
      );
    },
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      // Only opening the stream goes through the breaker: a long stream is not a slow call.
      // The request is read once so a retry can send it again.
      const buffered = collect(input);
      return withRetry(method, signal, async (e, s) =>
        e.transport.stream(
          method,
          s,
          timeoutMs,
          new Headers(header),
          replay(await buffered),
          contextValues,
        ),
      );
    },
    stats() {
      return [...endpoints.values()].map((e) => ({
        instance: e.key,
        address: e.address,
        weight: e.instance.weight,
        state: e.breaker.opened ? "open" : e.breaker.halfOpen ? "half-open" : "closed",
      }));
    },
    close() {
      unsubscribe();
      for (const endpoint of endpoints.values()) closeEndpoint(endpoint);
      endpoints.clear();
    },
  };
}

async function collect<T>(input: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of input) out.push(m);
  return out;
}

async function* replay<T>(messages: readonly T[]): AsyncIterable<T> {
  yield* messages;
}
