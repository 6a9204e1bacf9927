import {
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IBackoff,
  retry,
} from "cockatiel";
import { Etcd3, isRecoverableError } from "etcd3";

export type { Etcd3 };

/**
 * An etcd client tuned for a mesh that must ride out etcd outages: short dials,
 * a couple of quick retries, a host breaker that re-tries after half a second,
 * and watch streams that reconnect within two seconds instead of the library's
 * 30 s worst case.
 */
export function createEtcd(endpoints: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    dialTimeout: 2000,
    faultHandling: {
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: 500,
          breaker: new ConsecutiveBreaker(3),
        }),
      global: retry(handleWhen(isRecoverableError), {
        maxAttempts: 2,
        backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }),
      }),
      // etcd3 calls next() on this before use, as its own default does; its type says otherwise.
      watchBackoff: new ExponentialBackoff({
        initialDelay: 100,
        maxDelay: 2000,
      }) as unknown as IBackoff<unknown>,
    },
  });
}
