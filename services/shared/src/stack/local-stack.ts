/**
 * The whole mesh on this machine: private redis-server, mariadbd and etcd,
 * then every service as its own process (as Kubernetes would run them),
 * with their addresses written to .seckill/stack.json for other commands.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ServiceProcess, startServiceProcess } from "../testing/service-process.ts";
import { type Stack, startStack } from "./index.ts";
import { isBuilt, repoRoot, type ServicePlan } from "./plan.ts";

export interface LocalStackOptions {
  plan: ServicePlan[];
  /** Where state and logs go; default .seckill/ in the repository. */
  stateDir?: string;
  /** Extra env for every service. */
  env?: Record<string, string>;
  progress?: (line: string) => void;
}

export interface RunningInstance {
  service: string;
  instanceId: string;
  port: number;
  metricsPort: number;
  /** The gateway's HTTP/1.1 port (buy page, Connect, gRPC-Web). */
  http1Port: number | undefined;
  pid: number;
  logFile: string;
  process: ServiceProcess;
}

export interface LocalStack {
  infra: Stack<{ redis: { appendonly: true; appendfsync: "everysec" }; mariadb: true; etcd: true }>;
  instances: RunningInstance[];
  env: Record<string, string>;
  stateFile: string;
  /** Services in reverse start order (edge first), then the stores. */
  stop(): Promise<void>;
}

export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const progress = opts.progress ?? (() => {});
  const stateDir = opts.stateDir ?? join(repoRoot, ".seckill");
  const logDir = join(stateDir, "logs");
  mkdirSync(logDir, { recursive: true });

  const started = Date.now();
  progress("starting redis-server, mariadbd and etcd …");
  const infra = await startStack({
    redis: { appendonly: true, appendfsync: "everysec" },
    mariadb: true,
    etcd: true,
  });
  progress(`stores ready in ${Date.now() - started} ms`);

  const env: Record<string, string> = {
    ETCD_ENDPOINTS: infra.etcd.endpoints.join(","),
    REDIS_URL: infra.redis.url,
    MYSQL_URI: infra.mariadb.uri,
    // One secret shared by every seckill-app instance for buy tokens, fresh per local stack.
    BUY_TOKEN_SECRET: randomBytes(32).toString("base64url"),
    AUTH_DEV_KEYS: "true",
    ALLOW_PROVISIONING: "true",
    ADMIN_USERNAME: "admin",
    ADMIN_PASSWORD: "admin-password",
    LOG_LEVEL: "info",
    // Every simulated buyer comes from 127.0.0.1: a per-IP limit would measure only itself.
    RATE_LIMIT_IP_RPS: "0",
    // The buy page and the admin console (npm run build:web), on the gateway's HTTP/1.1 port.
    WEB_ROOT: join(repoRoot, "dist", "web"),
    ...opts.env,
  };

  const instances: RunningInstance[] = [];
  const stop = async () => {
    for (const instance of [...instances].reverse()) await instance.process.stop().catch(() => {});
    await infra.stop();
  };
  try {
    for (const plan of opts.plan) {
      if (!isBuilt(plan)) {
        progress(`${plan.name}: not built yet (${plan.entry} missing), skipped`);
        continue;
      }
      // Instances of one service start together; services start in plan order (dependencies first).
      const launched = await Promise.all(
        Array.from({ length: plan.instances }, async (_, i) => {
          const instanceId = `${plan.name}-${i + 1}`;
          const logFile = join(logDir, `${instanceId}.log`);
          const process = await startServiceProcess({
            entry: plan.entry,
            env: { ...env, SERVICE_NAME: plan.name, INSTANCE_ID: instanceId },
            logFile,
            keepLogs: false,
            readyTimeoutMs: 60_000,
          });
          return {
            service: plan.name,
            instanceId,
            port: process.port,
            metricsPort: process.metricsPort,
            http1Port: process.http1Port,
            pid: process.pid,
            logFile,
            process,
          };
        }),
      );
      instances.push(...launched);
      progress(`${plan.name}: ${launched.map((l) => `${l.instanceId} on :${l.port}`).join(", ")}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const stateFile = join(stateDir, "stack.json");
  writeFileSync(
    stateFile,
    `${JSON.stringify(
      {
        startedAt: new Date(started).toISOString(),
        etcd: infra.etcd.endpoints,
        redis: infra.redis.url,
        mysql: infra.mariadb.uri,
        instances: instances.map(({ process: _, ...rest }) => rest),
      },
      null,
      2,
    )}\n`,
  );
  return { infra, instances, env, stateFile, stop };
}
