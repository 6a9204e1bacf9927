/**
 * The whole mesh on this machine: private redis-server, mariadbd and etcd,
 * then every service as its own process (as Kubernetes would run them),
 * with their addresses written to .seckill/stack.json for other commands.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { instanceSchema, SERVICES_PREFIX } from "../mesh/registry.ts";
import { createEtcd } from "../stores/etcd.ts";
import { type ServiceProcess, startServiceProcess } from "../testing/service-process.ts";
import { type Stack, startStack } from "./index.ts";
import { isBuilt, repoRoot, type ServicePlan } from "./plan.ts";
import { type PrometheusServer, startPrometheus, type TargetGroup } from "./prometheus.ts";

export interface LocalStackOptions {
  plan: ServicePlan[];
  /** Where state and logs go; default .seckill/ in the repository. */
  stateDir?: string;
  /** Extra env for every service. */
  env?: Record<string, string>;
  progress?: (line: string) => void;
  /**
   * Also start a private Prometheus that scrapes every instance registered in
   * etcd (file_sd, rewritten every second) and loads deploy/monitoring/rules.yaml.
   */
  observe?: boolean;
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
  /** The Prometheus of `observe: true`. */
  prometheus: PrometheusServer | undefined;
  /** Prometheus first, then services in reverse start order (edge first), then the stores. */
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
  let prometheus: PrometheusServer | undefined;
  let stopTargets: (() => Promise<void>) | undefined;
  const stop = async () => {
    await stopTargets?.().catch(() => {});
    if (prometheus) {
      await prometheus.stop().catch(() => {});
      progress("prometheus stopped");
    }
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
    if (opts.observe) {
      progress("starting prometheus …");
      const registry = createEtcd(infra.etcd.endpoints);
      stopTargets = async () => registry.close();
      const initialTargets = await registeredTargets(registry, instances);
      prometheus = await startPrometheus({
        rulesFile: join(repoRoot, "deploy", "monitoring", "rules.yaml"),
        initialTargets,
      });
      stopTargets = followRegistry(registry, instances, prometheus);
      progress(`prometheus: ${prometheus.url} (scrapes the etcd registry every second)`);
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
        ...(prometheus ? { prometheus: prometheus.url } : {}),
        instances: instances.map(({ process: _, ...rest }) => rest),
      },
      null,
      2,
    )}\n`,
  );
  return { infra, instances, env, stateFile, prometheus, stop };
}

/**
 * Prometheus's file_sd targets for what the etcd registry lists: one target
 * group per registered instance (its metrics port comes from the stack, the
 * registration does not carry it), labelled job and service = the service,
 * instance = the instance id.
 */
async function registeredTargets(
  etcd: Etcd3,
  instances: RunningInstance[],
): Promise<TargetGroup[]> {
  const entries = await etcd.getAll().prefix(SERVICES_PREFIX).strings();
  const metricsPorts = new Map(instances.map((i) => [i.instanceId, i.metricsPort]));
  const groups: TargetGroup[] = [];
  for (const json of Object.values(entries)) {
    const parsed = instanceSchema.safeParse(JSON.parse(json));
    if (!parsed.success) continue;
    const { service, id, host } = parsed.data;
    const metricsPort = metricsPorts.get(id);
    if (!metricsPort) continue;
    groups.push({
      targets: [`${host.includes(":") ? `[${host}]` : host}:${metricsPort}`],
      labels: { job: service, service, instance: id },
    });
  }
  return groups.sort((a, b) => a.labels.instance!.localeCompare(b.labels.instance!));
}

/**
 * Keeps the targets equal to the registry: re-read every second (Prometheus
 * re-reads the file itself). Returns the stop function, which closes `etcd`.
 */
function followRegistry(
  etcd: Etcd3,
  instances: RunningInstance[],
  prometheus: PrometheusServer,
): () => Promise<void> {
  const refresh = async () => prometheus.writeTargets(await registeredTargets(etcd, instances));
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(refresh).catch(() => {}); // etcd briefly away: the next second retries
  }, 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
    etcd.close();
  };
}
