import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../../gen/grpc/health/v1/health_pb.ts";

export { ServingStatus };

/**
 * grpc.health.v1 state of one server: the overall status ("") and one per
 * service. Kubernetes gRPC probes call Check; Watch streams every change.
 */
export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<() => void>();

  constructor(services: readonly string[] = []) {
    this.statuses.set("", ServingStatus.NOT_SERVING);
    this.track(services);
  }

  /** Adds services to report on, with the overall status. */
  track(services: readonly string[]): void {
    const overall = this.statuses.get("") ?? ServingStatus.NOT_SERVING;
    for (const s of services) if (!this.statuses.has(s)) this.statuses.set(s, overall);
  }

  /** Sets every known service (and the overall status) at once. */
  setAll(status: ServingStatus): void {
    for (const name of this.statuses.keys()) this.statuses.set(name, status);
    this.notify();
  }

  set(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    this.notify();
  }

  get(service = ""): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  get serving(): boolean {
    return this.statuses.get("") === ServingStatus.SERVING;
  }

  private notify(): void {
    for (const wake of this.watchers) wake();
  }

  private response(service: string): HealthCheckResponse {
    return create(HealthCheckResponseSchema, {
      status: this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN,
    });
  }

  /** The grpc.health.v1.Health implementation over this state. */
  impl(): ServiceImpl<typeof Health> {
    return {
      check: (req) => {
        if (!this.statuses.has(req.service)) {
          throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
        }
        return this.response(req.service);
      },
      watch: (req, ctx) => this.watch(req.service, ctx.signal),
    };
  }

  private async *watch(service: string, signal: AbortSignal): AsyncIterable<HealthCheckResponse> {
    let last: ServingStatus | undefined;
    while (!signal.aborted) {
      const current = this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (current !== last) {
        last = current;
        yield this.response(service);
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.watchers.delete(wake);
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.watchers.add(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }
}

export { Health };
