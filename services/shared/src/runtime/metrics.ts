import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** One registry per process: every module's metrics land on the same /metrics page. */
export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry, prefix: "seckill_process_" });

const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function counter<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
) {
  return new Counter<L>({ name, help, labelNames, registers: [metricsRegistry] });
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []) {
  return new Gauge<L>({ name, help, labelNames, registers: [metricsRegistry] });
}

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  buckets = latencyBuckets,
) {
  return new Histogram<L>({ name, help, labelNames, buckets, registers: [metricsRegistry] });
}

/** Reuses a metric already registered under that name (modules may be loaded by many servers). */
export function once<T>(name: string, make: () => T): T {
  return (metricsRegistry.getSingleMetric(name) as T | undefined) ?? make();
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Prometheus scrape endpoint on its own port, plus /healthz and /readyz for
 * HTTP probes (Kubernetes uses the gRPC probes; these serve humans and curl).
 */
export async function serveMetrics(
  host: string,
  port: number,
  ready: () => boolean = () => true,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.url === "/metrics") {
      metricsRegistry.metrics().then(
        (body) => res.writeHead(200, { "content-type": metricsRegistry.contentType }).end(body),
        (err) => res.writeHead(500).end(String(err)),
      );
    } else if (req.url === "/healthz") {
      res.writeHead(200).end("ok\n");
    } else if (req.url === "/readyz") {
      const ok = ready();
      res.writeHead(ok ? 200 : 503).end(ok ? "ready\n" : "not ready\n");
    } else {
      res.writeHead(404).end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
