/**
 * `npm run bench:core`: what one reservation costs, from the script alone up
 * to core's Reserve RPC, in one run on a private redis-server:
 *
 *   1. raw `redis-benchmark` EVALSHA of the reservation script (the same text
 *      core loads), one command per round trip, then pipelined (-P 16);
 *   2. core's Reserve RPC, `--callers` concurrent callers, one item per RPC;
 *   3. the same callers through createReserver (micro-batching, 1 ms window).
 *
 * The stock is huge so nothing sells out; every call is a new buyer and
 * request id, so every call reserves (and appends to the stream). Core runs as
 * its own process (main.ts) and the RPC load runs in this one.
 *
 *   --seconds N   measured window per case (3)   --warmup N   warm-up per case (1)
 *   --callers N   concurrent callers (64)
 *
 * Prints a markdown table on stdout; progress goes to stderr.
 */
import { spawn } from "node:child_process";
import os from "node:os";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import { findBinary, startEtcd, startRedis } from "../../shared/src/stack/index.ts";
import { activityFixture } from "../../shared/src/testing/fixtures.ts";
import { startServiceProcess } from "../../shared/src/testing/service-process.ts";
import { createGrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import { createReserver } from "../src/client.ts";
import { RESERVE_LUA } from "../src/scripts.ts";
import { StockStore } from "../src/store.ts";
import { definition } from "../src/testing.ts";

const { values: flags } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    callers: { type: "string", default: "64" },
  },
});
const seconds = Number(flags.seconds);
const warmupSeconds = Number(flags.warmup);
const callers = Number(flags.callers);
if (!(seconds > 0 && warmupSeconds >= 0 && Number.isInteger(callers) && callers > 0)) {
  console.error("usage: core.bench.ts [--seconds N] [--warmup N] [--callers N]");
  process.exit(2);
}

const progress = (line: string) => process.stderr.write(`${line}\n`);
const HUGE_STOCK = 1e15; // never sells out, still an exact Lua number

interface Row {
  name: string;
  how: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  note?: string;
}

// ---------------------------------------------------------------------------
// redis-benchmark

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    child.stderr.on("data", (c) => {
      err += c;
    });
    const timer = setTimeout(
      () => child.kill("SIGKILL"),
      (seconds + warmupSeconds) * 1000 + 60_000,
    );
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} exited ${code}: ${err.slice(-500)}`));
    });
  });
}

let benchmarkRuns = 0;

/** One redis-benchmark run: `requests` EVALSHAs, `pipeline` per round trip, parsed from --csv. */
async function redisBenchmark(
  binary: string,
  port: number,
  sha: string,
  requests: number,
  pipeline: number,
) {
  const k = activityKeys("bench-raw");
  // redis-benchmark puts a fresh random number (< 2^31) in each occurrence, with the same
  // sequence on every run: a run prefix and two numbers per id keep the ids unique.
  const rand = `${++benchmarkRuns}-__rand_int____rand_int__`;
  const args = [
    ...["-h", "127.0.0.1", "-p", String(port), "-c", String(callers), "-n", String(requests)],
    ...["-P", String(pipeline), "-r", "2147483647", "--csv"],
    ...["EVALSHA", sha, "7", k.meta, k.stock, k.reserved, k.users, k.req, k.orders],
    ...[k.reservation(`o${rand}`), "bench-raw", `u${rand}`, "1", `r${rand}`, `o${rand}`],
  ];
  const csv = await run(binary, args);
  const line = csv.trim().split("\n").at(-1)!;
  const cells = line.split('","').map((c) => c.replaceAll('"', ""));
  return { rps: Number(cells[1]), p50: Number(cells[4]), p99: Number(cells[6]) };
}

// ---------------------------------------------------------------------------
// RPC load

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/** `callers` loops calling `call` for `ms`; latencies in ms. */
async function load(call: () => Promise<unknown>, ms: number) {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const end = started + ms;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await call();
          latencies.push(performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  const sorted = Float64Array.from(latencies).sort();
  const elapsed = (performance.now() - started) / 1000;
  return {
    rps: sorted.length / elapsed,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    errors,
    firstError,
  };
}

// ---------------------------------------------------------------------------

const machine = `${os.cpus()[0]?.model ?? "unknown CPU"}, ${os.availableParallelism()} cores, Node ${process.version}, ${os.platform()} ${os.arch()}`;
const rows: Row[] = [];
const [redisServer, etcdServer] = await Promise.all([startRedis(), startEtcd()]);
const cleanup: (() => unknown)[] = [() => redisServer.stop(), () => etcdServer.stop()];
try {
  const redisVersion = (await run(findBinary("redis-server") ?? "redis-server", ["--version"]))
    .split(" ")
    .find((w) => w.startsWith("v="))
    ?.slice(2);
  progress(`redis-server ${redisVersion} on port ${redisServer.port} (no persistence), ${machine}`);

  // 1. raw redis-benchmark
  const redis = new Redis(redisServer.url, { enableAutoPipelining: false });
  cleanup.unshift(() => redis.disconnect());
  const store = new StockStore(redis);
  await store.warmUp(
    definition({ id: "bench-raw", totalStock: HUGE_STOCK, perUserLimit: 1_000_000 }),
    {
      create: true,
    },
  );
  const sha = (await redis.script("LOAD", RESERVE_LUA)) as string;
  const benchmark = findBinary("redis-benchmark");
  if (!benchmark)
    throw new Error("redis-benchmark not found (it ships with redis-server / redis-tools)");
  for (const pipeline of [1, 16]) {
    const name = pipeline === 1 ? "raw EVALSHA" : "raw EVALSHA pipelined";
    progress(`${name}: calibrating ...`);
    const probe = await redisBenchmark(benchmark, redisServer.port, sha, 20_000, pipeline);
    const requests = Math.max(10_000, Math.round(probe.rps * seconds));
    progress(`${name}: ${requests} requests ...`);
    const r = await redisBenchmark(benchmark, redisServer.port, sha, requests, pipeline);
    rows.push({
      name,
      how: `redis-benchmark -c ${callers} -P ${pipeline}`,
      ...r,
      errors: 0,
    });
    progress(`  ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`);
  }
  const before = await store.getStock("bench-raw");
  progress(
    `  (raw runs reserved ${HUGE_STOCK - before!.remaining} units; stream ${await redis.xlen(activityKeys("bench-raw").orders)} entries)`,
  );

  // 2 and 3. core's Reserve RPC
  progress("starting seckill-core (services/seckill-core/src/main.ts) ...");
  const core = await startServiceProcess({
    entry: "services/seckill-core/src/main.ts",
    env: {
      REDIS_URL: redisServer.url,
      ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
      INSTANCE_ID: "core-bench",
      SHUTDOWN_DELAY_MS: "0",
    },
  });
  cleanup.unshift(() => core.stop());
  const transport = createGrpcTransport({ address: `127.0.0.1:${core.port}` });
  cleanup.unshift(() => transport.close());
  const client = createClient(SeckillCoreService, transport);
  await client.warmUp({
    activity: activityFixture({ id: "bench-rpc", totalStock: HUGE_STOCK, perUserLimit: 1_000_000 }),
  });
  let n = 0;
  const item = () => {
    const i = ++n;
    return { activityId: "bench-rpc", userId: `u${i}`, quantity: 1, requestId: `r${i}` };
  };
  let rpcs = 0;
  const counted = {
    ...client,
    reserve: (...args: Parameters<typeof client.reserve>) => {
      rpcs++;
      return client.reserve(...args);
    },
  };
  const reserver = createReserver(counted, { maxBatch: 256, maxDelayMs: 1, name: "bench" });
  const cases: { name: string; how: string; call: () => Promise<unknown> }[] = [
    {
      name: "core Reserve unbatched",
      how: `${callers} callers, 1 item per RPC`,
      call: () => client.reserve({ items: [item()] }),
    },
    {
      name: "core Reserve batched",
      how: `${callers} callers via createReserver (≤256 items, 1 ms)`,
      call: () => reserver(item()),
    },
  ];
  for (const c of cases) {
    progress(`${c.name}: warm-up ${warmupSeconds} s, then ${seconds} s ...`);
    await load(c.call, warmupSeconds * 1000);
    const rpcsBefore = rpcs;
    const r = await load(c.call, seconds * 1000);
    const batched = rpcs - rpcsBefore;
    const note =
      batched > 0
        ? `${Math.round(batched / seconds)} RPC/s, mean batch ${((r.rps * seconds) / batched).toFixed(1)}`
        : undefined;
    rows.push({ name: c.name, how: c.how, ...r, ...(note ? { note } : {}) });
    progress(
      `  ${Math.round(r.rps)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms` +
        (r.errors ? `, ${r.errors} errors (${r.firstError})` : "") +
        (note ? `; ${note}` : ""),
    );
  }
  const audit = await store.getStock("bench-rpc");
  progress(
    `  (RPC runs reserved ${HUGE_STOCK - audit!.remaining} units; remaining + reserved + paid == total: ${audit!.remaining + audit!.reserved + audit!.paid === audit!.total})`,
  );
} finally {
  for (const step of cleanup) await Promise.resolve(step()).catch(() => {});
}

// ---------------------------------------------------------------------------
// Report

const byName = (name: string) => rows.find((r) => r.name === name);
const raw = byName("raw EVALSHA");
const unbatched = byName("core Reserve unbatched");
const batched = byName("core Reserve batched");
const fixed = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "-");
const ratio = (a?: Row, b?: Row) => (a && b ? `${(a.rps / b.rps).toFixed(2)}x` : "-");

const lines = [
  `# seckill-core benchmark, ${new Date().toISOString()}`,
  "",
  `One reservation per request (new buyer and request id each time, stock never runs out), ${callers} concurrent callers;`,
  `${warmupSeconds} s warm-up then ${seconds} s measured per RPC case. redis-server without persistence; core is its own`,
  `process, the RPC load runs in the benchmark process. Machine: ${machine}.`,
  "",
  "| case | how | req/s | p50 ms | p99 ms | vs raw EVALSHA | errors | note |",
  "|---|---|---:|---:|---:|---:|---:|---|",
  ...rows.map(
    (r) =>
      `| ${r.name} | ${r.how} | ${fixed(r.rps, 0)} | ${fixed(r.p50, 2)} | ${fixed(r.p99, 2)} | ${ratio(r, raw)} | ${r.errors} | ${r.note ?? ""} |`,
  ),
  "",
  `Batched vs unbatched Reserve: ${ratio(batched, unbatched)} the throughput;` +
    ` batched Reserve reaches ${ratio(batched, raw)} of raw EVALSHA, unbatched ${ratio(unbatched, raw)}.`,
  "(raw rows: latency as redis-benchmark reports it; in the raw runs the reservation key's id and the",
  "order id argument are separate random numbers, which changes nothing in the script's cost.)",
];
console.log(lines.join("\n"));
