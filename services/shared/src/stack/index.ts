/**
 * The local stack: real redis-server, mariadbd and etcd on private loopback
 * ports with throw-away directories under os.tmpdir()/seckill-stack-*, for
 * tests and the demo. Every server is stopped and its directory removed by
 * stop(), at process exit, on a signal (after installSignalCleanup()), and,
 * when the process was killed outright, by the next run's sweep.
 */
export {
  type CommandRunner,
  type EnsureBinaryOptions,
  ensureBinary,
  findBinary,
  INSTALL_HINT,
  STACK_PACKAGES,
} from "./binaries.ts";
export { type EtcdOptions, type EtcdServer, startEtcd } from "./etcd.ts";
export type { ServerHandle } from "./managed-server.ts";
export { type MariaDbOptions, type MariaDbServer, startMariaDb } from "./mariadb.ts";
export { canConnect, freePort, LOOPBACK } from "./net.ts";
export {
  type PrometheusOptions,
  type PrometheusServer,
  startPrometheus,
  type TargetGroup,
} from "./prometheus.ts";
export { type RedisOptions, type RedisServer, startRedis } from "./redis.ts";
export {
  installSignalCleanup,
  STACK_DIR_PREFIX,
  stopAllServers,
  sweepOrphans,
} from "./registry.ts";
export { type Stack, type StackOptions, startStack } from "./stack.ts";
export { tailFile, type WaitForOptions, waitFor } from "./wait.ts";
