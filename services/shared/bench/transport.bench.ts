/**
 * `npm run bench:transport`: one unary Echo hop over loopback, `--inflight`
 * calls in flight (64), for each transport stack the mesh and the edge use.
 * Every case gets a fresh server process (echo-server.ts) and a fresh load
 * process (load-client.ts): two event loops, roughly a core each on 2 cores
 * (not pinned; the CPU columns show how the time was actually split).
 *
 *   --seconds N   measured window per case (5)      --warmup N  warm-up per case (1.5)
 *   --inflight N  concurrent calls (64)              --only a,b  cases whose name contains a or b
 *   --rounds N    run every case N times, interleaved, and keep each case's best round (1)
 *   --cpu-prof    write V8 CPU profiles of both processes to a temporary directory
 *
 * Prints a markdown table on stdout (progress on stderr); also saves it with
 * the raw numbers as JSON in bench/results/ when that directory exists.
 */

import { type ChildProcess, fork } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { has, is, nextMessage, stopChild } from "./children.ts";
import type { ServerKind } from "./echo-server.ts";
import type { ClientKind, LoadOptions, LoadResult } from "./load-client.ts";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

interface Case {
  name: string;
  server: ServerKind;
  client: ClientKind;
}

const cases: Case[] = [
  { name: "B-grpc", server: "adapter", client: "adapter" },
  { name: "B-grpc+mesh-interceptors", server: "adapter-observed", client: "adapter-observed" },
  { name: "B-grpc+mesh-transport", server: "adapter-observed", client: "mesh" },
  { name: "B-edge gRPC", server: "connect-node", client: "connect-grpc" },
  { name: "B-edge Connect", server: "connect-node", client: "connect" },
  { name: "raw grpc-js", server: "raw", client: "raw" },
  { name: "adapter client only", server: "raw", client: "adapter" },
  { name: "adapter server only", server: "adapter", client: "raw" },
  { name: "connect-node server only", server: "connect-node", client: "raw" },
  { name: "connect-node client only", server: "adapter", client: "connect-grpc" },
];

const serverLabel: Record<ServerKind, string> = {
  adapter: "grpc-js + adapter",
  "adapter-observed": "grpc-js + adapter + tracing, metrics, error log",
  "connect-node": "connect-node adapter on http2",
  raw: "grpc-js, hand-written handler",
};
const clientLabel: Record<ClientKind, string> = {
  adapter: "adapter transport",
  "adapter-observed": "adapter transport + tracing, metrics",
  mesh: "mesh transport (SWRR, breaker) + tracing, metrics",
  "connect-grpc": "connect-node gRPC, http2",
  connect: "connect-node Connect binary, http2",
  raw: "grpc-js Client",
};

const { values: flags } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    warmup: { type: "string", default: "1.5" },
    inflight: { type: "string", default: "64" },
    only: { type: "string" },
    rounds: { type: "string", default: "1" },
    "cpu-prof": { type: "boolean", default: false },
  },
});
const seconds = Number(flags.seconds);
const warmupSeconds = Number(flags.warmup);
const inflight = Number(flags.inflight);
const rounds = Number(flags.rounds);
const positiveInt = (n: number) => Number.isInteger(n) && n > 0;
if (!(seconds > 0 && warmupSeconds >= 0 && positiveInt(inflight) && positiveInt(rounds))) {
  console.error(
    "usage: transport.bench.ts [--seconds N] [--warmup N] [--inflight N] [--rounds N] [--only a,b] [--cpu-prof]",
  );
  process.exit(2);
}
const only = flags.only?.split(",").map((s) => s.trim().toLowerCase());
const selected = cases.filter((c) => !only || only.some((o) => c.name.toLowerCase().includes(o)));
const profDir = flags["cpu-prof"] ? mkdtempSync(join(os.tmpdir(), "bench-transport-")) : undefined;

// ---------------------------------------------------------------------------
// Child processes

function spawnChild(file: string, arg: string, prefix: string): ChildProcess {
  const prof = profDir
    ? [
        "--cpu-prof",
        `--cpu-prof-dir=${profDir}`,
        `--cpu-prof-name=${prefix}-${Date.now()}.cpuprofile`,
      ]
    : [];
  return fork(here(file), [arg], {
    cwd: repoRoot,
    execArgv: ["--import", "tsx", ...prof],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

/** Busy and total CPU time of the whole machine so far, in clock ticks (Linux only). */
function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
    const n = ticks.slice(0, 8).map(Number); // user … steal; guest is already in user
    const total = n.reduce((a, b) => a + b, 0);
    return { busy: total - n[3]! - n[4]!, total }; // minus idle and iowait
  } catch {
    return undefined;
  }
}

interface Row extends Case {
  /** cpu, serverCpu, otherCpu: cores busy in the window (1 = one core); other = the rest of the machine. */
  result?: LoadResult & { rps: number; serverCpu: number; otherCpu: number };
  failure?: string;
}

async function runCase(c: Case): Promise<Row> {
  const server = spawnChild("echo-server.ts", c.server, `server-${c.name.replace(/\W+/g, "_")}`);
  let client: ChildProcess | undefined;
  try {
    const { port } = await nextMessage(server, has("port"), 30_000);
    const opts: LoadOptions = { client: c.client, port, inflight, warmupSeconds, seconds };
    client = spawnChild(
      "load-client.ts",
      JSON.stringify(opts),
      `client-${c.name.replace(/\W+/g, "_")}`,
    );
    const bound = (warmupSeconds + seconds) * 1000 + 30_000;
    const result = nextMessage(client, has("requests"), bound) as Promise<LoadResult>;
    result.catch(() => {}); // awaited below, after the window opens
    await nextMessage(client, is("measuring"), bound);
    server.send("mark");
    const ticks0 = machineTicks();
    const load = await result;
    server.send("report");
    const ticks1 = machineTicks();
    const { cpu } = await nextMessage(server, has("cpu"), 5000);
    const machineCpu =
      ticks0 && ticks1
        ? ((ticks1.busy - ticks0.busy) / (ticks1.total - ticks0.total)) * os.cpus().length
        : Number.NaN;
    const otherCpu = Math.max(0, machineCpu - load.cpu - cpu);
    return {
      ...c,
      result: { ...load, rps: load.requests / load.seconds, serverCpu: cpu, otherCpu },
    };
  } catch (err) {
    return { ...c, failure: err instanceof Error ? err.message : String(err) };
  } finally {
    if (client) await stopChild(client);
    await stopChild(server);
  }
}

// ---------------------------------------------------------------------------
// Report

const version = (pkg: string) =>
  (
    JSON.parse(readFileSync(join(repoRoot, "node_modules", pkg, "package.json"), "utf8")) as {
      version: string;
    }
  ).version;

const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.availableParallelism(),
  node: process.version,
  os: `${os.platform()} ${os.release()} ${os.arch()}`,
  grpcJs: version("@grpc/grpc-js"),
  connectNode: version("@connectrpc/connect-node"),
  loadAverageBefore: os.loadavg()[0]!,
};

const fixed = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
const percent = (n: number) => `${Math.round(n * 100)}%`;
/** Share of one core, and CPU time per call. */
const cpuCell = (cores: number, rps: number) =>
  `${percent(cores)} (${fixed((cores / rps) * 1e6, 0)} µs)`;
/** Other processes using more than this share of a core make a row suspect. */
const disturbance = 0.25;

function table(rows: Row[]): string {
  const base = rows[0]?.result?.rps;
  const lines = [
    "| case | server | client | req/s | p50 ms | p99 ms | vs first | client CPU | server CPU | other CPU | errors |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const row of rows) {
    const r = row.result;
    const cells = r
      ? [
          fixed(r.rps, 0),
          fixed(r.p50, 2),
          fixed(r.p99, 2),
          base ? `${(r.rps / base).toFixed(2)}x` : "-",
          cpuCell(r.cpu, r.rps),
          cpuCell(r.serverCpu, r.rps),
          Number.isFinite(r.otherCpu) ? percent(r.otherCpu) : "-",
          r.errors ? `${r.errors} (${r.firstError})` : "0",
        ]
      : ["failed", "-", "-", "-", "-", "-", "-", row.failure ?? ""];
    lines.push(
      `| ${[row.name, serverLabel[row.server], clientLabel[row.client], ...cells].join(" | ")} |`,
    );
  }
  const disturbed = rows.filter((row) => (row.result?.otherCpu ?? 0) > disturbance).length;
  if (disturbed > 0)
    lines.push(
      "",
      `Warning: ${disturbed} of ${rows.length} rows ran while other processes used more than ${percent(disturbance)} of a core (other CPU); rerun on a quiet machine.`,
    );
  return lines.join("\n");
}

const header = [
  `# Transport benchmark, ${new Date().toISOString()}`,
  "",
  `Unary Echo over loopback, ${inflight} calls in flight, ${warmupSeconds} s warm-up then ${seconds} s measured per case${rounds > 1 ? ` (best of ${rounds} interleaved rounds)` : ""};`,
  "server and load generator are separate processes. CPU: share of one core used by that process",
  "(CPU time per call); other CPU is the rest of the machine during the window.",
  "",
  `Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.os};`,
  `@grpc/grpc-js ${machine.grpcJs}, @connectrpc/connect-node ${machine.connectNode}; load average ${machine.loadAverageBefore.toFixed(2)} at start.`,
].join("\n");
console.log(`${header}\n`);

// Rounds interleave the cases so that a burst of outside load hits one round of
// each rather than every round of one; the best round is the least disturbed.
const runs: Row[][] = selected.map(() => []);
for (let round = 1; round <= rounds; round++) {
  for (const [i, c] of selected.entries()) {
    const step = rounds > 1 ? `round ${round}/${rounds}, ` : "";
    process.stderr.write(`[${step}${i + 1}/${selected.length}] ${c.name} ... `);
    const row = await runCase(c);
    runs[i]!.push(row);
    const r = row.result;
    process.stderr.write(
      r
        ? `${fixed(r.rps, 0)} req/s, p50 ${fixed(r.p50, 2)} ms, p99 ${fixed(r.p99, 2)} ms, other CPU ${percent(r.otherCpu)}\n`
        : `failed: ${row.failure}\n`,
    );
  }
}
const best = (tries: Row[]) =>
  tries.reduce((a, b) => ((b.result?.rps ?? -1) > (a.result?.rps ?? -1) ? b : a));
const rows = runs.map(best);

const loadAfter = `Load average ${os.loadavg()[0]!.toFixed(2)} at the end.`;
const markdown = `${header}\n\n${table(rows)}\n\n${loadAfter}\n`;
console.log(`${table(rows)}\n\n${loadAfter}`);
if (profDir) console.log(`\nCPU profiles: ${profDir}`);

const resultsDir = join(repoRoot, "bench", "results");
if (existsSync(resultsDir)) {
  const file = join(resultsDir, `transport-${new Date().toISOString().slice(0, 10)}`);
  writeFileSync(`${file}.md`, markdown);
  writeFileSync(
    `${file}.json`,
    `${JSON.stringify({ machine, inflight, warmupSeconds, seconds, rounds, rows, runs }, null, 2)}\n`,
  );
  console.log(`\nSaved ${file}.md and .json`);
}
if (rows.some((r) => r.failure)) process.exitCode = 1;
