/**
 * What seckill-app's answers cost, end to end over gRPC, on a private
 * redis-server and etcd, with seckill-core and seckill-app each running as
 * their own process (main.ts) and the load in this one:
 *
 *   GetServerTime, ListActivities (20 activities), Buy → RESERVED (token check,
 *   rate limit + claim script, batched Reserve), Buy → SOLD_OUT (local flag),
 *   Buy → TOKEN_INVALID (forged token), and core's Reserve through
 *   createReserver without the app, for comparison.
 *
 *   node --import tsx services/seckill-app/bench/app.bench.ts [--seconds 3] [--callers 64]
 *     [--autopipelining] [--cpu-prof-dir DIR]
 *
 * Prints a markdown table and the app's own stage latencies (from /metrics).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { createReserver } from "../../seckill-core/src/client.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import { activityKey, encodeActivity } from "../../shared/src/sale/activities.ts";
import { startEtcd, startRedis } from "../../shared/src/stack/index.ts";
import { createEtcd } from "../../shared/src/stores/etcd.ts";
import { activityFixture } from "../../shared/src/testing/fixtures.ts";
import { startServiceProcess } from "../../shared/src/testing/service-process.ts";
import { createGrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import { identityHeaders } from "../../shared/src/transport/identity.ts";
import { BuyTokens } from "../src/buy-token.ts";

const { values: flags } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    callers: { type: "string", default: "64" },
    /** Write a V8 CPU profile of the app process into this directory. */
    "cpu-prof-dir": { type: "string" },
    /** Run the app with REDIS_AUTO_PIPELINING=true. */
    autopipelining: { type: "boolean", default: false },
  },
});
const seconds = Number(flags.seconds);
const warmupSeconds = Number(flags.warmup);
const callers = Number(flags.callers);
const progress = (line: string) => process.stderr.write(`${line}\n`);
const SECRET = "bench-secret-bench-secret-bench-secret";
const HUGE = 1e15;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

async function load(call: (i: number) => Promise<unknown>, ms: number) {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let i = 0;
  const started = performance.now();
  const end = started + ms;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await call(i++);
          latencies.push(performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  const sorted = Float64Array.from(latencies).sort();
  return {
    rps: sorted.length / ((performance.now() - started) / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    errors,
    firstError,
  };
}

/** CPU seconds a process used so far (utime + stime from /proc). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ
}

const rows: string[] = [];
const [redisServer, etcdServer] = await Promise.all([startRedis(), startEtcd()]);
const env = {
  REDIS_URL: redisServer.url,
  ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
  LOG_LEVEL: "info",
  SHUTDOWN_DELAY_MS: "0",
  BUY_TOKEN_SECRET: SECRET,
  USER_RATE_LIMIT: "1000000",
  SOLD_OUT_TTL_MS: "600000",
};
const core = await startServiceProcess({
  entry: "services/seckill-core/src/main.ts",
  env: { ...env, INSTANCE_ID: "core-bench" },
  keepLogs: false,
});
const app = await startServiceProcess({
  entry: "services/seckill-app/src/main.ts",
  env: {
    ...env,
    INSTANCE_ID: "app-bench",
    ...(flags["cpu-prof-dir"]
      ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${flags["cpu-prof-dir"]}` }
      : {}),
    ...(flags.autopipelining ? { REDIS_AUTO_PIPELINING: "true" } : {}),
  },
  keepLogs: false,
});
const etcd = createEtcd(etcdServer.endpoints);
const appTransport = createGrpcTransport({ address: `127.0.0.1:${app.port}` });
const coreTransport = createGrpcTransport({ address: `127.0.0.1:${core.port}` });
try {
  const appClient = createClient(SeckillAppService, appTransport);
  const coreClient = createClient(SeckillCoreService, coreTransport);
  const tokens = new BuyTokens(SECRET, 600);

  const publish = async (a: ReturnType<typeof activityFixture>) => {
    await coreClient.warmUp({ activity: a });
    await etcd.put(activityKey(a.id)).value(encodeActivity(a));
  };
  for (let i = 0; i < 18; i++)
    await publish(activityFixture({ id: `filler-${i}`, totalStock: 10 }));
  await publish(activityFixture({ id: "bench", totalStock: HUGE, perUserLimit: 1 }));
  await publish(activityFixture({ id: "gone", totalStock: 1, perUserLimit: 1 }));
  for (;;) {
    const { activities } = await appClient.listActivities({});
    if (activities.length === 20) break;
    await sleep(20);
  }
  // Sell "gone" out through the app so its flag is up.
  const first = await appClient.buy(
    {
      activityId: "gone",
      quantity: 1,
      buyToken: tokens.issue("first", "gone").token,
      requestId: "first",
    },
    { headers: identityHeaders({ userId: "first", role: "user", ip: undefined }) },
  );
  if (!first.soldOut) throw new Error(`expected sold out: ${BuyResult[first.result]}`);

  let run = 0;
  const buyCase = (activityId: string, expected: BuyResult, forge = false) => {
    const r = ++run;
    const forger = new BuyTokens("a-forger-secret-a-forger-secret-!!", 600);
    return async (i: number) => {
      const userId = `u${r}-${i}`;
      const res = await appClient.buy(
        {
          activityId,
          quantity: 1,
          buyToken: (forge ? forger : tokens).issue(userId, activityId).token,
          requestId: `r${r}-${i}`,
        },
        { headers: identityHeaders({ userId, role: "user", ip: undefined }) },
      );
      if (res.result !== expected) throw new Error(`got ${BuyResult[res.result]}: ${res.message}`);
    };
  };
  const reserver = createReserver(coreClient, { maxBatch: 256, maxDelayMs: 1 });
  const cases: [string, (i: number) => Promise<unknown>][] = [
    ["GetServerTime", () => appClient.getServerTime({})],
    ["ListActivities (20)", () => appClient.listActivities({})],
    ["Buy → RESERVED", buyCase("bench", BuyResult.RESERVED)],
    ["Buy → SOLD_OUT (local flag)", buyCase("gone", BuyResult.SOLD_OUT)],
    ["Buy → TOKEN_INVALID (forged)", buyCase("bench", BuyResult.TOKEN_INVALID, true)],
    [
      "core Reserve via createReserver (no app)",
      (i) =>
        reserver({ activityId: "bench", userId: `direct-${i}`, quantity: 1, requestId: `d-${i}` }),
    ],
  ];
  for (const [name, call] of cases) {
    progress(`${name} ...`);
    if (warmupSeconds > 0) await load(call, warmupSeconds * 1000);
    const pids = { app: app.pid, core: core.pid, redis: redisServer.pid };
    const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
    const self0 = process.cpuUsage();
    const r = await load(call, seconds * 1000);
    const self = process.cpuUsage(self0);
    const total = r.rps * seconds;
    const us = (cpu: number) => ((cpu * 1e6) / total).toFixed(0);
    const cpu = Object.entries(pids).map(([k, p]) => us(cpuSeconds(p) - before[k]!));
    rows.push(
      `| ${name} | ${Math.round(r.rps)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${cpu.join(" | ")} | ${us((self.user + self.system) / 1e6)} | ${r.errors}${r.firstError ? ` (${r.firstError})` : ""} |`,
    );
    progress(`  ${Math.round(r.rps)} req/s`);
  }

  const metrics = await (await fetch(`http://127.0.0.1:${app.metricsPort}/metrics`)).text();
  const value = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? Number.NaN);
  const stages = ["token", "admission", "rate_limit", "core"].map((stage) => {
    const sum = value(new RegExp(`seckill_app_buy_stage_seconds_sum\\{stage="${stage}"\\} (\\S+)`));
    const count = value(
      new RegExp(`seckill_app_buy_stage_seconds_count\\{stage="${stage}"\\} (\\S+)`),
    );
    return `${stage} ${count > 0 ? ((sum / count) * 1000).toFixed(3) : "-"} ms (n=${count})`;
  });
  const batchSum = value(/seckill_batch_size_sum\{batcher="reserve"\} (\S+)/);
  const batchCount = value(/seckill_batch_size_count\{batcher="reserve"\} (\S+)/);

  console.log(
    `\n${os.cpus()[0]?.model ?? "?"}, ${os.availableParallelism()} cores, Node ${process.version}; ${callers} callers, ${seconds} s per case; core and app are separate processes, load in a third\n`,
  );
  console.log(
    "| case | req/s | p50 ms | p99 ms | app CPU µs/req | core CPU µs/req | redis CPU µs/req | load client CPU µs/req | errors |\n|---|---|---|---|---|---|---|---|---|",
  );
  console.log(rows.join("\n"));
  console.log(`\napp stage means: ${stages.join(", ")}`);
  console.log(`app → core batches: ${(batchSum / batchCount).toFixed(1)} items per Reserve RPC`);
} finally {
  appTransport.close();
  coreTransport.close();
  await app.stop();
  await core.stop();
  etcd.close();
  await Promise.all([redisServer.stop(), etcdServer.stop()]);
}
