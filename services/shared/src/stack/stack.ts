/** Starting several stack servers at once, and stopping them together. */
import { type EtcdOptions, type EtcdServer, startEtcd } from "./etcd.ts";
import type { ServerHandle } from "./managed-server.ts";
import { type MariaDbOptions, type MariaDbServer, startMariaDb } from "./mariadb.ts";
import { type RedisOptions, type RedisServer, startRedis } from "./redis.ts";

/** Which servers to start: true for the defaults, or that server's options. */
export interface StackOptions {
  redis?: boolean | RedisOptions;
  mariadb?: boolean | MariaDbOptions;
  etcd?: boolean | EtcdOptions;
}

// A requested server is present in the result's type, so callers need no `!`.
type Started<O, K extends keyof StackOptions, Server> = O extends { [P in K]: infer R }
  ? R extends false | undefined
    ? undefined
    : Server
  : undefined;

export interface Stack<O extends StackOptions = StackOptions> {
  redis: Started<O, "redis", RedisServer>;
  mariadb: Started<O, "mariadb", MariaDbServer>;
  etcd: Started<O, "etcd", EtcdServer>;
  /** Stops every server of this stack (in parallel) and removes their directories. */
  stop(): Promise<void>;
  /** One line per server, for progress tables. */
  describe(): string;
}

/**
 * Starts the requested servers in parallel. If one fails, the others are
 * stopped again and the first error is thrown.
 */
export async function startStack<const O extends StackOptions>(options: O): Promise<Stack<O>> {
  const launches = {
    redis: launch(options.redis, startRedis),
    mariadb: launch(options.mariadb, startMariaDb),
    etcd: launch(options.etcd, startEtcd),
  };
  const [redis, mariadb, etcd] = await Promise.allSettled([
    launches.redis,
    launches.mariadb,
    launches.etcd,
  ]);
  const settled = [redis, mariadb, etcd];
  const servers = settled.flatMap((result) =>
    result.status === "fulfilled" && result.value ? [result.value] : [],
  );
  const stop = async () => {
    await Promise.allSettled(servers.map((server) => server.stop()));
  };
  const failure = settled.find((result) => result.status === "rejected");
  if (failure) {
    await stop();
    throw failure.reason;
  }
  const value = <T>(result: PromiseSettledResult<T>) =>
    result.status === "fulfilled" ? result.value : undefined;
  return {
    redis: value(redis),
    mariadb: value(mariadb),
    etcd: value(etcd),
    stop,
    describe: () => servers.map((server) => server.describe()).join("\n"),
  } as Stack<O>;
}

function launch<Options, Server extends ServerHandle>(
  request: boolean | Options | undefined,
  start: (options?: Options) => Promise<Server>,
): Promise<Server | undefined> {
  if (!request) return Promise.resolve(undefined);
  return start(request === true ? undefined : request);
}
