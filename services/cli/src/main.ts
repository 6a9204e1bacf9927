#!/usr/bin/env node
/**
 * `seckill`: run the mesh locally on real servers, and load it.
 *   seckill up                  start stores and services, print the addresses, run until Ctrl-C
 *   seckill up --observe        the same plus a Prometheus scraping every registered instance
 *   seckill demo                start everything, run a flash sale through the gateway, report, stop
 *   seckill load --target URL   run a flash sale against any gateway (local or in a cluster)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { instanceSchema, SERVICES_PREFIX } from "../../shared/src/mesh/registry.ts";
import { type LocalStack, startLocalStack } from "../../shared/src/stack/local-stack.ts";
import { defaultPlan, repoRoot } from "../../shared/src/stack/plan.ts";
import { createEtcd } from "../../shared/src/stores/etcd.ts";
import {
  checks,
  type InstanceShare,
  renderText,
  scrapeShares,
  writeReport,
} from "./load/report.ts";
import type { LoadModel, LoadSnapshot } from "./load/runner.ts";
import { runSale, type SaleReport } from "./load/sale.ts";
import { migrateAll } from "./migrate.ts";
import { renderTable } from "./table.ts";

const usage = `usage: seckill <command> [options]

commands:
  up       start redis-server, mariadbd, etcd and every service; Ctrl-C stops all
  demo     start the stack, run a flash sale through the gateway, print the report, stop
  load     run a flash sale against a running gateway (--target, or the stack of 'seckill up')
  migrate  apply every service's MySQL migrations to $MYSQL_URI (the Helm migration Job)

options:
  --app N            seckill-app instances (up, demo; default 2)
  --core N           seckill-core instances (up, demo; default 2)
  --keep             (demo) leave the stack running afterwards
  --observe          (up, demo) also start Prometheus (apt: prometheus), scraping every
                     instance in the etcd registry, with deploy/monitoring/rules.yaml loaded
  --target URL       (load) gateway URL, e.g. http://127.0.0.1:8080; default: .seckill/stack.json
  --buyers N         buyers, each tries once (default 20000; demo too)
  --stock N          units on sale (default 1000)
  --concurrency N    closed model: buyers in flight at once (default 256)
  --rate R           open model: buyers arriving per second (latency corrected for coordinated omission)
  --duration S       stop the rush after S seconds at the latest (default 600); unserved buyers fail the run
  --protocol P       grpc (default) or connect
  --admin-user U     (load) admin username (default $SECKILL_ADMIN_USER or "admin")
  --admin-password P (load) admin password (default $SECKILL_ADMIN_PASSWORD or "admin-password")
  --out DIR          where report.json and report.html go (default .seckill/reports/<time>)
`;

const progress = (line: string) => process.stderr.write(`· ${line}\n`);

/** A progress bar on a terminal; one line a second in logs (CI). */
function progressBar() {
  const tty = process.stderr.isTTY;
  let lastLine = 0;
  return {
    tick(s: LoadSnapshot, total: number) {
      const width = 30;
      const done = Math.min(width, Math.round((width * s.completed) / Math.max(1, total)));
      const line = `[${"#".repeat(done)}${".".repeat(width - done)}] ${s.completed}/${total} buyers  reserved ${s.reserved}  in flight ${s.inFlight}  ${(s.elapsedMs / 1000).toFixed(1)} s`;
      if (tty) process.stderr.write(`\r${line}`);
      else if (s.elapsedMs - lastLine >= 1000 || s.completed === total) {
        lastLine = s.elapsedMs;
        process.stderr.write(`${line}\n`);
      }
    },
    end() {
      if (tty) process.stderr.write("\n");
    },
  };
}

async function registeredInstances(etcdEndpoints: string[]) {
  const etcd = createEtcd(etcdEndpoints);
  try {
    const entries = await etcd.getAll().prefix(SERVICES_PREFIX).strings();
    return Object.values(entries)
      .map((json) => instanceSchema.parse(JSON.parse(json)))
      .sort((a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id));
  } finally {
    etcd.close();
  }
}

async function printMesh(stack: LocalStack) {
  const registered = await registeredInstances(stack.infra.etcd.endpoints);
  const byId = new Map(stack.instances.map((i) => [i.instanceId, i]));
  console.log("\nstores");
  console.log(
    renderTable(
      ["store", "address"],
      [
        ["etcd", stack.infra.etcd.endpoints.join(",")],
        ["redis", stack.infra.redis.url],
        ["mariadb", stack.infra.mariadb.uri],
      ],
    ),
  );
  console.log("\nservices registered in etcd");
  console.log(
    renderTable(
      ["service", "instance", "grpc", "metrics", "weight", "pid", "log"],
      registered.map((r) => {
        const local = byId.get(r.id);
        return [
          r.service,
          r.id,
          `${r.host}:${r.port}`,
          local ? `http://127.0.0.1:${local.metricsPort}/metrics` : "",
          r.weight,
          local?.pid,
          local?.logFile.replace(repoRoot, ""),
        ];
      }),
    ),
  );
  const gateway = stack.instances.find((i) => i.service === "gateway");
  if (gateway) {
    console.log(`\ngateway: http://127.0.0.1:${gateway.port} (h2c: Connect, gRPC-Web, gRPC)`);
    if (gateway.http1Port) {
      console.log(
        `buy page: http://127.0.0.1:${gateway.http1Port}/   admin console: http://127.0.0.1:${gateway.http1Port}/admin`,
      );
    }
  }
  if (stack.prometheus) {
    console.log(`Prometheus: ${stack.prometheus.url} (alerts: ${stack.prometheus.url}/alerts)`);
  }
  console.log(`state: ${stack.stateFile}`);
  return registered;
}

interface StackFile {
  instances: { service: string; instanceId: string; port: number; metricsPort: number }[];
}

function readStackFile(): StackFile | undefined {
  try {
    return JSON.parse(readFileSync(join(repoRoot, ".seckill", "stack.json"), "utf8")) as StackFile;
  } catch {
    return undefined;
  }
}

const shareMethods = { "seckill-app": "Buy", "seckill-core": "Reserve", gateway: "Buy" };

async function saleAndReport(
  target: string,
  values: Record<string, string | boolean | undefined>,
  instances: StackFile["instances"],
): Promise<SaleReport> {
  const str = (k: string) => values[k] as string | undefined;
  const num = (k: string, d: number) => (str(k) === undefined ? d : Number(str(k)));
  const model: LoadModel = str("rate")
    ? { kind: "open", rate: num("rate", 1000) }
    : { kind: "closed", concurrency: num("concurrency", 256) };
  const before = await scrapeShares(instances, shareMethods);
  const bar = progressBar();
  const report = await runSale({
    target,
    protocol: (str("protocol") as "grpc" | "connect" | undefined) ?? "grpc",
    adminUsername: str("admin-user") ?? process.env.SECKILL_ADMIN_USER ?? "admin",
    adminPassword: str("admin-password") ?? process.env.SECKILL_ADMIN_PASSWORD ?? "admin-password",
    stock: num("stock", 1000),
    buyers: num("buyers", 20_000),
    model,
    maxDurationMs: num("duration", 600) * 1000,
    progress,
    onTick: (s, total) => bar.tick(s, total),
  });
  bar.end();
  const after = await scrapeShares(instances, shareMethods);
  const shares: InstanceShare[] = after.map((a) => ({
    ...a,
    calls: a.calls - (before.find((b) => b.instance === a.instance)?.calls ?? 0),
  }));
  console.log(`\n${renderText(report, shares)}`);
  const dir =
    str("out") ??
    join(repoRoot, ".seckill", "reports", new Date().toISOString().replace(/[:.]/g, "-"));
  const files = writeReport(dir, report, shares);
  console.log(`\nreport: ${files.html}\n        ${files.json}`);
  return report;
}

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      app: { type: "string" },
      core: { type: "string" },
      keep: { type: "boolean", default: false },
      observe: { type: "boolean", default: false },
      target: { type: "string" },
      buyers: { type: "string" },
      stock: { type: "string" },
      concurrency: { type: "string" },
      rate: { type: "string" },
      duration: { type: "string" },
      protocol: { type: "string" },
      "admin-user": { type: "string" },
      "admin-password": { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(usage);
    return;
  }

  if (command === "migrate") {
    const uri = process.env.MYSQL_URI;
    if (!uri) throw new Error("MYSQL_URI is not set");
    await migrateAll(uri);
    return;
  }

  if (command === "load") {
    const stackFile = readStackFile();
    const gateway = stackFile?.instances.find((i) => i.service === "gateway");
    const target = values.target ?? (gateway ? `http://127.0.0.1:${gateway.port}` : undefined);
    if (!target) throw new Error("no --target given and no .seckill/stack.json from 'seckill up'");
    const report = await saleAndReport(
      target,
      values,
      values.target ? [] : (stackFile?.instances ?? []),
    );
    process.exitCode = checks(report).every((c) => c.ok) ? 0 : 1;
    return;
  }

  if (command === "up" || command === "demo") {
    const plan = defaultPlan({
      ...(values.app ? { "seckill-app": Number(values.app) } : {}),
      ...(values.core ? { "seckill-core": Number(values.core) } : {}),
    });
    const stack = await startLocalStack({ plan, progress, observe: values.observe });
    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= (async () => {
        progress(`stopping ${stack.prometheus ? "prometheus, " : ""}services, then stores …`);
        await stack.stop();
        progress("stopped");
      })();
      return stopping;
    };
    const interrupted = new Promise<void>((resolve) => {
      onInterrupt = resolve;
    });
    try {
      const registered = await printMesh(stack);
      if (registered.length !== stack.instances.length) {
        throw new Error(
          `expected ${stack.instances.length} registered instances, etcd lists ${registered.length}`,
        );
      }
      if (command === "demo") {
        const gateway = stack.instances.find((i) => i.service === "gateway");
        if (!gateway) throw new Error("the gateway is not built yet: no sale to run");
        const report = await saleAndReport(
          `http://127.0.0.1:${gateway.port}`,
          values,
          stack.instances,
        );
        process.exitCode = checks(report).every((c) => c.ok) ? 0 : 1;
      }
      if (command === "up" || values.keep) {
        console.log(
          "\nRunning. In another terminal: npx seckill load   (Ctrl-C here stops everything)",
        );
        await interrupted;
      }
    } finally {
      await stop();
    }
    return;
  }
  console.error(`unknown command: ${command}\n\n${usage}`);
  process.exitCode = 2;
}

/**
 * Ctrl-C: before the stack is up, exit at once (exit handlers kill what was
 * started); once it is up, stop services first, then the stores; a second
 * Ctrl-C exits at once.
 */
let onInterrupt: () => void = () => process.exit(130);
let interrupts = 0;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => (++interrupts > 1 ? process.exit(130) : onInterrupt()));
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
