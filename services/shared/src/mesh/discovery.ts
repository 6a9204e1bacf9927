import type { Etcd3 } from "etcd3";
import type { Logger } from "../runtime/log.ts";
import { PrefixWatch } from "./prefix-watch.ts";
import { instanceSchema, type ServiceInstance, servicePrefix } from "./registry.ts";

export type InstancesListener = (instances: readonly ServiceInstance[]) => void;

/** Where a balancer learns the instances of a service. */
export interface InstanceSource {
  readonly service: string;
  instances(): readonly ServiceInstance[];
  subscribe(listener: InstancesListener): () => void;
  /** Resolves after the first complete list is known. */
  ready?(): Promise<void>;
}

/**
 * The live list of a service's instances from etcd. Entries that do not parse
 * are skipped with a warning rather than breaking the whole list.
 */
export class ServiceDiscovery implements InstanceSource {
  private list: readonly ServiceInstance[] = [];
  private readonly listeners = new Set<InstancesListener>();
  private readonly watch: PrefixWatch;

  constructor(
    etcd: Etcd3,
    readonly service: string,
    private readonly log: Logger,
  ) {
    this.watch = new PrefixWatch({
      etcd,
      prefix: servicePrefix(service),
      log,
      onChange: (entries) => this.update(entries),
    });
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  ready(): Promise<void> {
    return this.watch.start();
  }

  instances(): readonly ServiceInstance[] {
    return this.list;
  }

  subscribe(listener: InstancesListener): () => void {
    this.listeners.add(listener);
    listener(this.list);
    return () => this.listeners.delete(listener);
  }

  close(): Promise<void> {
    this.listeners.clear();
    return this.watch.close();
  }

  private update(entries: ReadonlyMap<string, string>): void {
    const list: ServiceInstance[] = [];
    for (const [key, value] of entries) {
      try {
        list.push(instanceSchema.parse(JSON.parse(value)));
      } catch (err) {
        this.log.warn({ key, err: String(err) }, "ignoring a malformed registration");
      }
    }
    list.sort((a, b) => a.id.localeCompare(b.id));
    this.list = list;
    this.log.debug(
      { service: this.service, instances: list.map((i) => i.id) },
      "instances changed",
    );
    for (const listener of this.listeners) listener(list);
  }
}

/** A fixed list of instances, for tests and for pointing a client at one address. */
export function staticInstances(
  service: string,
  instances: readonly ServiceInstance[],
): InstanceSource {
  return {
    service,
    instances: () => instances,
    subscribe(listener) {
      listener(instances);
      return () => {};
    },
  };
}
