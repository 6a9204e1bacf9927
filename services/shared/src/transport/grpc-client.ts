/**
 * The client side of the grpc-js adapter (see `grpc-codec.ts`): a connect
 * `Transport` on one grpc-js channel, so `createClient(Service, transport)`
 * works on it and runs connect-es interceptors. Unary and server-streaming
 * methods only.
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodStreaming,
  DescMethodUnary,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { runStreamingCall, runUnaryCall } from "@connectrpc/connect/protocol";
import * as grpc from "@grpc/grpc-js";
import { effectiveTimeoutMs } from "./deadline.ts";
import {
  deserializer,
  fromServiceError,
  headersToMetadata,
  metadataToHeaders,
  serializer,
} from "./grpc-codec.ts";

type HeadersInit = ConstructorParameters<typeof Headers>[0];

export interface GrpcTransportOptions {
  /** host:port of one server instance. */
  address: string;
  interceptors?: Interceptor[];
  channelOptions?: grpc.ChannelOptions;
}

export interface GrpcTransport extends Transport {
  readonly address: string;
  close(): void;
}

const defaultChannelOptions: grpc.ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  // Each instance gets its own connection; the mesh balances across instances itself.
  "grpc.use_local_subchannel_pool": 1,
  "grpc.enable_retries": 0,
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 2000,
};

/** A connect `Transport` on one grpc-js channel: `createClient(Service, transport)` works on it. */
export function createGrpcTransport(opts: GrpcTransportOptions): GrpcTransport {
  const client = new grpc.Client(opts.address, grpc.credentials.createInsecure(), {
    ...defaultChannelOptions,
    ...opts.channelOptions,
  });
  const url = (method: DescMethod) =>
    `grpc://${opts.address}/${method.parent.typeName}/${method.name}`;
  const path = (method: DescMethod) => `/${method.parent.typeName}/${method.name}`;
  const callOptions = (timeoutMs: number | undefined): grpc.CallOptions =>
    timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };

  return {
    address: opts.address,
    close: () => client.close(),

    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const timeout = effectiveTimeoutMs(timeoutMs);
      return runUnaryCall<I, O>({
        interceptors: opts.interceptors,
        signal,
        timeoutMs: timeout,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: url(method),
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: (req) =>
          new Promise<UnaryResponse<I, O>>((resolve, reject) => {
            const responseHeader = new Headers();
            const trailer = new Headers();
            const call = client.makeUnaryRequest(
              path(method),
              serializer(method.input),
              deserializer(method.output),
              req.message,
              headersToMetadata(req.header),
              callOptions(timeout),
              (err, value) => {
                req.signal.removeEventListener("abort", cancel);
                if (err || value === undefined) reject(fromServiceError(err));
                else
                  resolve({
                    stream: false,
                    service: method.parent,
                    method,
                    header: responseHeader,
                    trailer,
                    message: value,
                  });
              },
            );
            const cancel = () => call.cancel();
            req.signal.addEventListener("abort", cancel, { once: true });
            call.on("metadata", (md) => metadataToHeaders(md, responseHeader));
            call.on("status", (status) => metadataToHeaders(status.metadata, trailer));
          }),
      });
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      if (method.methodKind !== "server_streaming") {
        throw new ConnectError(
          `${method.methodKind} is not supported by the grpc transport`,
          Code.Unimplemented,
        );
      }
      const timeout = effectiveTimeoutMs(timeoutMs);
      return runStreamingCall<I, O>({
        interceptors: opts.interceptors,
        signal,
        timeoutMs: timeout,
        req: {
          stream: true,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: url(method),
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message: input,
        },
        next: async (req) => {
          let request: MessageShape<I> | undefined;
          for await (const m of req.message) {
            request = m;
            break;
          }
          if (request === undefined)
            throw new ConnectError("missing request message", Code.InvalidArgument);
          const responseHeader = new Headers();
          const trailer = new Headers();
          const call = client.makeServerStreamRequest(
            path(method),
            serializer(method.input),
            deserializer(method.output),
            request,
            headersToMetadata(req.header),
            callOptions(timeout),
          );
          const cancel = () => call.cancel();
          req.signal.addEventListener("abort", cancel, { once: true });
          call.on("status", (status) => metadataToHeaders(status.metadata, trailer));
          // Wait for the response headers (or the failure) so the caller sees errors at once.
          await new Promise<void>((resolve, reject) => {
            call.once("metadata", (md) => {
              metadataToHeaders(md, responseHeader);
              resolve();
            });
            call.once("error", (err) => reject(fromServiceError(err)));
          });
          async function* messages(): AsyncIterable<MessageShape<O>> {
            try {
              for await (const m of call) yield m as MessageShape<O>;
            } catch (err) {
              throw fromServiceError(err);
            } finally {
              req.signal.removeEventListener("abort", cancel);
              call.cancel();
            }
          }
          return {
            stream: true,
            service: method.parent,
            method,
            header: responseHeader,
            trailer,
            message: messages(),
          };
        },
      });
    },
  };
}
