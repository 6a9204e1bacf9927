import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import type { Tracer } from "@opentelemetry/api";
import type { Etcd3 } from "etcd3";
import type { Logger } from "../runtime/log.ts";
import { clientMetrics, clientTracing } from "../transport/interceptors.ts";
import { type BreakerOptions, createMeshTransport, type MeshTransport } from "./balancer.ts";
import { ServiceDiscovery } from "./discovery.ts";

export interface MeshOptions {
  etcd: Etcd3;
  log: Logger;
  tracer: Tracer;
  breaker?: Partial<BreakerOptions>;
  interceptors?: Interceptor[];
}

/**
 * A process's view of the other services: one discovery watch and one balanced
 * transport per service name, shared by every client of that service.
 */
export class Mesh {
  private readonly transports = new Map<
    string,
    { discovery: ServiceDiscovery; transport: MeshTransport }
  >();

  constructor(private readonly opts: MeshOptions) {}

  /** The balanced transport to a service, starting its discovery on first use. */
  transport(serviceName: string): MeshTransport {
    let entry = this.transports.get(serviceName);
    if (!entry) {
      const discovery = new ServiceDiscovery(this.opts.etcd, serviceName, this.opts.log);
      void discovery.start();
      const transport = createMeshTransport({
        source: discovery,
        log: this.opts.log,
        breaker: this.opts.breaker,
        interceptors: [
          ...(this.opts.interceptors ?? []),
          clientTracing(this.opts.tracer),
          clientMetrics(),
        ],
      });
      entry = { discovery, transport };
      this.transports.set(serviceName, entry);
    }
    return entry.transport;
  }

  /** A typed client of `service` as served by the instances registered under `serviceName`. */
  client<S extends DescService>(service: S, serviceName: string): Client<S> {
    return createClient(service, this.transport(serviceName));
  }

  /** Resolves once the first etcd read of the service's instances is done. */
  ready(serviceName: string): Promise<void> {
    this.transport(serviceName);
    return this.transports.get(serviceName)!.discovery.start();
  }

  async close(): Promise<void> {
    for (const { discovery, transport } of this.transports.values()) {
      transport.close();
      await discovery.close();
    }
    this.transports.clear();
  }
}
