import { type Tracer, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

export interface TelemetryOptions {
  service: string;
  instance: string;
  version: string;
  exporter: "none" | "console" | "otlp";
  otlpEndpoint?: string | undefined;
  /** Extra exporter, e.g. an in-memory one in tests. */
  extraExporter?: SpanExporter;
}

export interface Telemetry {
  tracer: Tracer;
  shutdown(): Promise<void>;
}

/**
 * The only place that touches the OpenTelemetry SDK: code elsewhere uses the API.
 * A provider is registered even with no exporter so that trace ids exist for logs
 * and propagate to the next hop.
 */
let started: Telemetry | undefined;

export function startTelemetry(opts: TelemetryOptions): Telemetry {
  // The API holds one global provider per process; tests run several servers in one.
  if (started) return started;
  const spanProcessors: SpanProcessor[] = [];
  if (opts.exporter === "console")
    spanProcessors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
  if (opts.exporter === "otlp") {
    const url = opts.otlpEndpoint ? `${opts.otlpEndpoint.replace(/\/$/, "")}/v1/traces` : undefined;
    spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter(url ? { url } : {})));
  }
  if (opts.extraExporter) spanProcessors.push(new SimpleSpanProcessor(opts.extraExporter));
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": opts.service,
      "service.instance.id": opts.instance,
      "service.version": opts.version,
    }),
    spanProcessors,
  });
  provider.register();
  started = {
    tracer: trace.getTracer("seckill", opts.version),
    shutdown: async () => {
      started = undefined;
      await provider.shutdown();
      trace.disable();
    },
  };
  return started;
}
