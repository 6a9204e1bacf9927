import type { Etcd3, Lease } from "etcd3";
import { z } from "zod";
import type { Logger } from "../runtime/log.ts";
import { counter, gauge, once } from "../runtime/metrics.ts";
import { backoffMs, sleep } from "../runtime/time.ts";

export const SERVICES_PREFIX = "/seckill/services/";

export const instanceSchema = z.object({
  service: z.string().min(1),
  id: z.string().min(1),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  weight: z.number().int().min(0).default(1),
  zone: z.string().default(""),
  version: z.string().default(""),
});

/** One registered instance of a service, as stored in etcd. */
export type ServiceInstance = z.infer<typeof instanceSchema>;

export const instanceKey = (service: string, id: string) => `${SERVICES_PREFIX}${service}/${id}`;
export const servicePrefix = (service: string) => `${SERVICES_PREFIX}${service}/`;

export function instanceAddress(instance: Pick<ServiceInstance, "host" | "port">): string {
  return instance.host.includes(":")
    ? `[${instance.host}]:${instance.port}`
    : `${instance.host}:${instance.port}`;
}

const registered = once("seckill_registry_registered", () =>
  gauge("seckill_registry_registered", "1 while this instance holds its registration in etcd.", [
    "service",
  ]),
);
const reregistrations = once("seckill_registry_reregistrations_total", () =>
  counter(
    "seckill_registry_reregistrations_total",
    "Registrations made again after the lease was lost.",
    ["service"],
  ),
);

export interface Registration {
  readonly instance: ServiceInstance;
  /** Changes the weight balancers give this instance. */
  setWeight(weight: number): Promise<void>;
  /** Revokes the lease: the instance disappears from every watcher at once. */
  close(): Promise<void>;
}

/**
 * Puts the instance under a lease that is kept alive; when the lease is lost
 * (etcd was unreachable for longer than the TTL, or it expired), registers
 * again with a new lease, retrying until etcd answers.
 */
export async function register(
  etcd: Etcd3,
  instance: ServiceInstance,
  opts: { ttlSeconds: number; log: Logger },
): Promise<Registration> {
  const closed = new AbortController();
  const key = instanceKey(instance.service, instance.id);
  let current = { ...instance };
  let lease: Lease | undefined;

  const grantAndPut = async () => {
    const next = etcd.lease(opts.ttlSeconds, { autoKeepAlive: true });
    next.on("lost", (err) => {
      if (closed.signal.aborted || lease !== next) return;
      registered.set({ service: instance.service }, 0);
      opts.log.warn({ key, err: String(err) }, "registration lease lost; registering again");
      reregistrations.inc({ service: instance.service });
      void keepRegistered();
    });
    try {
      await next.put(key).value(JSON.stringify(current));
    } catch (err) {
      next.release();
      throw err;
    }
    lease = next;
    registered.set({ service: instance.service }, 1);
  };

  const keepRegistered = async () => {
    for (let attempt = 0; !closed.signal.aborted; attempt++) {
      try {
        await grantAndPut();
        opts.log.info({ key, attempt }, "registered");
        return;
      } catch (err) {
        if (attempt % 10 === 0)
          opts.log.warn({ key, attempt, err: String(err) }, "registration failed; retrying");
        await sleep(backoffMs(attempt), closed.signal);
      }
    }
  };

  await grantAndPut();
  opts.log.info({ key, instance }, "registered");

  return {
    get instance() {
      return current;
    },
    async setWeight(weight) {
      current = { ...current, weight };
      await lease?.put(key).value(JSON.stringify(current));
    },
    async close() {
      closed.abort();
      registered.set({ service: instance.service }, 0);
      await lease
        ?.revoke()
        .catch((err) =>
          opts.log.warn({ key, err: String(err) }, "lease revoke failed; it will expire"),
        );
    },
  };
}
