#!/usr/bin/env node
/**
 * `seckill`: run the mesh locally on real servers.
 *   seckill up     start stores and services, print the addresses, run until Ctrl-C
 *   seckill demo   start everything, show the mesh, stop (npm run demo)
 */
import { parseArgs } from "node:util";
import { createEtcd } from "../../shared/src/etcd.ts";
import { instanceSchema, SERVICES_PREFIX } from "../../shared/src/registry.ts";
import { type LocalStack, startLocalStack } from "./local-stack.ts";
import { defaultPlan } from "./plan.ts";
import { renderTable } from "./table.ts";

const usage = `usage: seckill <command> [options]

commands:
  up      start redis-server, mariadbd, etcd and every service; Ctrl-C stops all
  demo    start the stack, show the registered mesh, and stop (--keep leaves it running)

options:
  --app N    seckill-app instances (default 2)
  --core N   seckill-core instances (default 2)
  --keep     (demo) leave the stack running
`;

const progress = (line: string) => process.stderr.write(`· ${line}\n`);

async function registeredInstances(stack: LocalStack) {
  const etcd = createEtcd(stack.infra.etcd.endpoints);
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
  const registered = await registeredInstances(stack);
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
          local?.logFile.replace(`${process.cwd()}/`, ""),
        ];
      }),
    ),
  );
  console.log(`\nstate: ${stack.stateFile}`);
  return registered;
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

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      app: { type: "string" },
      core: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const command = positionals[0];
  if (values.help || !command) {
    console.log(usage);
    return;
  }
  const plan = defaultPlan({
    ...(values.app ? { "seckill-app": Number(values.app) } : {}),
    ...(values.core ? { "seckill-core": Number(values.core) } : {}),
  });

  if (command === "up" || command === "demo") {
    const stack = await startLocalStack({ plan, progress });
    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= (async () => {
        progress("stopping services, then stores …");
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
      if (command === "demo") {
        const expected = stack.instances.length;
        if (registered.length !== expected) {
          throw new Error(
            `expected ${expected} registered instances, etcd lists ${registered.length}`,
          );
        }
        console.log(`\n${registered.length} instances registered and serving.`);
      }
      if (command === "up" || values.keep) {
        console.log("\nRunning. Press Ctrl-C to stop everything.");
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

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
