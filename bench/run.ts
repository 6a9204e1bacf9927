/**
 * `npm run bench`: the mesh's ratios measured side by side, in one run, on
 * this machine, every figure from the same style of load generator (N
 * concurrent callers, a fixed warm-up then a fixed measured window, loopback):
 *
 *   B-edge    bare connect-node echo server, connect-node gRPC client (the gateway's client);
 *             run first and again last, the better run is the ceiling
 *   B-grpc    bare grpc-js echo server (grpc-js + adapter on both sides)
 *   B-redis   redis-benchmark EVALSHA of the reservation script (services/seckill-core/bench)
 *   monolith  one connect-node process: buy token check + the reservation script (bench/monolith.ts)
 *   mesh      the local stack (gateway → seckill-app → seckill-core → Redis; order → MySQL):
 *             (a) buy path before sell-out, (b) sold-out path, (c) latency at half of (a)'s
 *             rate in the open model, (d) order drain rate (services/order/bench)
 *
 * Units: one request = one Buy call. Buy tokens are fetched first (GetBuyToken through the
 * same client, measured as its own row) and handed to runLoad, so the measured windows of
 * (a), (b), (c) and the monolith contain Buy calls only. (a) and the monolith use a fresh
 * token per Buy (tokens are single use); (b) reuses each buyer's token (a sold-out answer
 * does not consume it). runLoad runs with no retries and no comebacks: one attempt = one Buy.
 *
 *   --seconds N       measured window per case (5)      --warmup N  warm-up per case (2)
 *   --concurrency N   callers in flight (64)            --buyers N  buyers, reused round-robin (256)
 *   --only a,b        cases: edge, grpc, redis, drain, monolith, buy, soldout, halfrate
 *   --cpu-prof        V8 CPU profiles of every service process and the monolith (NODE_OPTIONS)
 *
 * Prints the table on stdout (progress on stderr) and saves bench/results/<date>.{json,md}.
 */

import { type ChildProcess, fork, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
} from "@connectrpc/connect";
import {
  type Buyer,
  type LoadModel,
  type LoadResult,
  runLoad,
} from "../services/cli/src/load/runner.ts";
import { gatewayTransport, openSale, provisionBuyers } from "../services/cli/src/load/sale.ts";
import { AdminService } from "../services/gen/seckill/admin/v1/admin_pb.ts";
import { SeckillAppService } from "../services/gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../services/gen/seckill/auth/v1/auth_pb.ts";
import { BuyResult } from "../services/gen/seckill/common/v1/common_pb.ts";
import { StockStore } from "../services/seckill-core/src/store.ts";
import { definition } from "../services/seckill-core/src/testing.ts";
import { has, nextMessage, stopChild } from "../services/shared/bench/children.ts";
import type { ServerKind } from "../services/shared/bench/echo-server.ts";
import type {
  ClientKind,
  LoadOptions as EchoLoadOptions,
  LoadResult as EchoLoadResult,
} from "../services/shared/bench/load-client.ts";
import { createLogger } from "../services/shared/src/runtime/log.ts";
import { startLocalStack } from "../services/shared/src/stack/local-stack.ts";
import { defaultPlan, repoRoot } from "../services/shared/src/stack/plan.ts";
import { createRedis } from "../services/shared/src/stores/redis.ts";

const { values: flags } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    warmup: { type: "string", default: "2" },
    concurrency: { type: "string", default: "64" },
    buyers: { type: "string", default: "256" },
    only: { type: "string" },
    "cpu-prof": { type: "boolean", default: false },
  },
});
const seconds = Number(flags.seconds);
const warmup = Number(flags.warmup);
const concurrency = Number(flags.concurrency);
const buyerCount = Number(flags.buyers);
const positiveInt = (n: number) => Number.isInteger(n) && n > 0;
if (!(seconds > 0 && warmup >= 0 && positiveInt(concurrency) && positiveInt(buyerCount))) {
  console.error(
    "usage: bench/run.ts [--seconds N] [--warmup N] [--concurrency N] [--buyers N] [--only a,b] [--cpu-prof]",
  );
  process.exit(2);
}
const only = flags.only?.split(",").map((s) => s.trim());
const wanted = (name: string) => !only || only.includes(name);
const profDir = flags["cpu-prof"] ? mkdtempSync(join(os.tmpdir(), "bench-prof-")) : undefined;
const profArgs = profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : [];

const benchStarted = Date.now();
const progress = (line: string) =>
  process.stderr.write(
    `[${((Date.now() - benchStarted) / 1000).toFixed(0).padStart(3)} s] ${line}\n`,
  );
const load1 = () => os.loadavg()[0]!;

const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.availableParallelism(),
  memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
  node: process.version,
  os: `${os.platform()} ${os.release()} ${os.arch()}`,
  loadAverageAtStart: os.loadavg().map((l) => Number(l.toFixed(2))),
};

interface Row {
  name: string;
  what: string;
  rps: number;
  p50: number;
  p99: number;
  /** Calls that did not end as expected (errors, or outcomes other than the case's). */
  errors: number;
  note?: string;
  /** 1-minute load average when the case ended. */
  load: number;
}
const rows: Row[] = [];
const add = (row: Omit<Row, "load">) => {
  const full = { ...row, load: load1() };
  rows.push(full);
  progress(
    `${row.name}: ${fixed(row.rps, 0)} req/s, p50 ${fixed(row.p50, 2)} ms, p99 ${fixed(row.p99, 2)} ms` +
      (row.errors ? `, ${row.errors} errors` : "") +
      (row.note ? ` (${row.note})` : ""),
  );
};
const fixed = (n: number, d: number) => (Number.isFinite(n) ? n.toFixed(d) : "-");
const cleanup: (() => unknown)[] = [];

// ---------------------------------------------------------------------------
// Child processes: the transport bench's echo server and load client, core's and order's benches

function forkChild(file: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = fork(join(repoRoot, file), args, {
    cwd: repoRoot,
    execArgv: ["--import", "tsx", ...profArgs],
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  cleanup.push(() => stopChild(child));
  return child;
}

/** Runs a node script to its end; its stdout is returned, its stderr shown as progress. */
function runScript(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", file, ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${file} exited ${code}`));
    });
  });
}

async function echoCase(name: string, what: string, server: ServerKind, client: ClientKind) {
  const srv = forkChild("services/shared/bench/echo-server.ts", [server]);
  try {
    const { port } = await nextMessage(srv, has("port"), 30_000);
    const opts: EchoLoadOptions = {
      client,
      port,
      inflight: concurrency,
      warmupSeconds: warmup,
      seconds,
    };
    const cli = forkChild("services/shared/bench/load-client.ts", [JSON.stringify(opts)]);
    const r = (await nextMessage(
      cli,
      has("requests"),
      (warmup + seconds) * 1000 + 30_000,
    )) as unknown as EchoLoadResult;
    await stopChild(cli);
    add({
      name,
      what,
      rps: r.requests / r.seconds,
      p50: r.p50,
      p99: r.p99,
      errors: r.errors,
      note: `load client CPU ${Math.round(r.cpu * 100)}% of a core`,
    });
  } finally {
    await stopChild(srv);
  }
}

// ---------------------------------------------------------------------------
// Buy tokens fetched ahead, then handed to runLoad: its measured window holds Buy calls only

type AppClient = Client<typeof SeckillAppService>;
const authOf = (options?: CallOptions) =>
  ((options?.headers ?? {}) as Record<string, string>).authorization ?? "";

class TokenBank {
  private readonly byBuyer = new Map<string, string[]>();
  size = 0;

  /** An app client whose Buy only files the token GetBuyToken just gave (nothing is bought). */
  collector(app: AppClient): AppClient {
    return {
      getBuyToken: app.getBuyToken,
      buy: async (req: { buyToken: string }, options?: CallOptions) => {
        const key = authOf(options);
        const list = this.byBuyer.get(key) ?? [];
        list.push(req.buyToken);
        this.byBuyer.set(key, list);
        this.size++;
        return { result: BuyResult.RESERVED, orderId: "", retryAfterMs: 0 };
      },
    } as unknown as AppClient;
  }

  /** An app client whose GetBuyToken answers from the bank (no RPC): one real Buy per attempt. */
  spender(app: AppClient, reuse: boolean): AppClient {
    return {
      getBuyToken: async (_req: unknown, options?: CallOptions) => {
        const list = this.byBuyer.get(authOf(options));
        const buyToken = reuse ? list?.[0] : list?.shift();
        if (!buyToken) throw new ConnectError("no prefetched buy token", Code.FailedPrecondition);
        if (!reuse) this.size--;
        return { buyToken };
      },
      buy: app.buy,
    } as unknown as AppClient;
  }
}

const MAX = Number.MAX_SAFE_INTEGER;

/** runLoad for a warm-up window then a measured one; every attempt is one call. */
async function measured(
  label: string,
  app: AppClient,
  activityId: string,
  buyers: readonly Buyer[],
  model: LoadModel,
  bound: { warmAttempts?: number; attempts?: () => number } = {},
): Promise<LoadResult> {
  const run = (phase: string, ms: number, maxAttempts: number) =>
    runLoad({
      app,
      activityId,
      buyers,
      model,
      maxAttempts,
      maxDurationMs: ms,
      repeat: true,
      retries: 0,
      comebacks: 0,
      onTick: (s) => {
        if (s.elapsedMs % 1000 < 250)
          progress(
            `  ${label} ${phase}: ${s.completed} done, ${s.inFlight} in flight, ${(s.elapsedMs / 1000).toFixed(1)} s`,
          );
      },
    });
  if (warmup > 0) await run("warm-up", warmup * 1000, bound.warmAttempts ?? MAX);
  // Read after the warm-up: a bank of single-use tokens has shrunk by then.
  return run("measured", seconds * 1000, bound.attempts?.() ?? MAX);
}

function loadRow(name: string, what: string, r: LoadResult, expected: string[], note?: string) {
  const s = r.latency.summary();
  const errors = Object.entries(r.outcomes)
    .filter(([k]) => !expected.includes(k))
    .reduce((a, [, n]) => a + n, 0);
  const outcomes = Object.entries(r.outcomes)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  add({
    name,
    what,
    // Only the case's own answers count: a fast failure must not raise the rate.
    rps: (r.completed - errors) / (r.durationMs / 1000),
    p50: s.p50,
    p99: s.p99,
    errors,
    note: [note, outcomes].filter(Boolean).join("; "),
  });
}

/** Fills `bank` for `ms` (closed model) or until it holds `count` tokens; the GetBuyToken row. */
async function prefetch(
  label: string,
  app: AppClient,
  bank: TokenBank,
  activityId: string,
  buyers: readonly Buyer[],
  limit: { ms: number; count?: number },
) {
  const r = await runLoad({
    app: bank.collector(app),
    activityId,
    buyers,
    model: { kind: "closed", concurrency },
    maxAttempts: limit.count ?? MAX,
    maxDurationMs: limit.ms,
    repeat: true,
    retries: 0,
    comebacks: 0,
  });
  progress(`  ${label}: ${bank.size} buy tokens fetched in ${(r.durationMs / 1000).toFixed(1)} s`);
  return r;
}

// ---------------------------------------------------------------------------

process.on("SIGINT", async () => {
  for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => {});
  process.exit(130);
});

progress(
  `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}; load average ${machine.loadAverageAtStart.join(", ")}`,
);
progress(`${concurrency} callers, ${warmup} s warm-up + ${seconds} s measured per case`);
const extra: Record<string, unknown> = {};

try {
  // B-edge and B-grpc: the transport bench's processes.
  if (wanted("edge"))
    await echoCase(
      "B-edge",
      "bare connect-node echo server, connect-node gRPC client",
      "connect-node",
      "connect-grpc",
    );
  if (wanted("grpc"))
    await echoCase("B-grpc", "bare grpc-js echo server and client (adapter)", "adapter", "adapter");

  // B-redis: core's bench (its own redis-server, no persistence); its raw rows and its RPC rows.
  if (wanted("redis")) {
    progress("B-redis: services/seckill-core/bench/core.bench.ts …");
    const out = await runScript(
      "services/seckill-core/bench/core.bench.ts",
      ["--seconds", String(seconds), "--warmup", String(warmup), "--callers", String(concurrency)],
      (warmup + seconds) * 4000 + 120_000,
    );
    const cells = (name: string) =>
      out
        .split("\n")
        .find((l) => l.startsWith(`| ${name} |`))
        ?.split("|")
        .map((c) => c.trim());
    const raw = cells("raw EVALSHA");
    if (!raw) throw new Error(`core.bench.ts printed no raw EVALSHA row:\n${out}`);
    add({
      name: "B-redis",
      what: `redis-benchmark -c ${concurrency} EVALSHA of the reservation script`,
      rps: Number(raw[3]),
      p50: Number(raw[4]),
      p99: Number(raw[5]),
      errors: 0,
    });
    extra.coreBench = out;
  }

  // (d) drain: order's bench (its own redis-server and mariadbd), the service defaults 500 × 2.
  if (wanted("drain")) {
    progress("drain: services/order/bench/drain.bench.ts …");
    const out = await runScript(
      "services/order/bench/drain.bench.ts",
      ["--entries", "30000", "--warmup", "5000", "--cases", "500x2"],
      180_000,
    );
    const match = /= +([\d,]+) orders\/s.*$/m.exec(out);
    if (!match) throw new Error(`drain.bench.ts printed no rate:\n${out}`);
    add({
      name: "mesh (d) order drain",
      what: "order consumer, stream → MariaDB, batch 500 × inflight 2, 30,000 orders (orders/s)",
      rps: Number(match[1]!.replaceAll(",", "")),
      p50: Number.NaN,
      p99: Number.NaN,
      errors: 0,
      note: match[0].replace(/^= +[\d,]+ orders\/s\s*/, "").trim(),
    });
  }

  const meshCases = ["monolith", "buy", "soldout", "halfrate"].filter(wanted);
  if (meshCases.length > 0) {
    progress("starting the local stack (services/shared/src/stack/local-stack.ts) …");
    const stack = await startLocalStack({
      plan: defaultPlan(),
      stateDir: mkdtempSync(join(os.tmpdir(), "bench-stack-")),
      env: {
        // Buyers are reused round-robin: the per-user token and buy rates must not be what is measured.
        USER_RATE_LIMIT: "1000000",
        TOKEN_RATE_LIMIT: "1000000",
        ...(profDir ? { NODE_OPTIONS: profArgs.join(" ") } : {}),
      },
      progress,
    });
    cleanup.push(() => stack.stop());

    // The monolith peer, on the stack's redis-server (same persistence as the mesh's).
    if (wanted("monolith")) {
      const secret = randomBytes(32).toString("base64url");
      const mono = forkChild("bench/monolith.ts", [], {
        REDIS_URL: stack.env.REDIS_URL!,
        BUY_TOKEN_SECRET: secret,
      });
      const { port } = await nextMessage(mono, has("port"), 30_000);
      const redis = createRedis(stack.env.REDIS_URL!, createLogger("bench", "warn"));
      const activityId = `bench-mono-${randomBytes(3).toString("hex")}`;
      await new StockStore(redis).warmUp(
        definition({ id: activityId, totalStock: 1_000_000_000, perUserLimit: 1_000_000 }),
        { create: true },
      );
      await redis.quit();
      const app = createClient(SeckillAppService, gatewayTransport(`http://127.0.0.1:${port}`));
      const buyers = Array.from({ length: buyerCount }, (_, i) => ({ token: `mono-${i}` }));
      const bank = new TokenBank();
      await prefetch("monolith", app, bank, activityId, buyers, {
        ms: 2 * (warmup + seconds) * 1000,
      });
      const r = await measured(
        "monolith",
        bank.spender(app, false),
        activityId,
        buyers,
        {
          kind: "closed",
          concurrency,
        },
        { attempts: () => bank.size },
      );
      loadRow("monolith", "one connect-node process: buy token check + reservation script", r, [
        "RESERVED",
      ]);
      await stopChild(mono);
    }

    const gateway = stack.instances.find((i) => i.service === "gateway");
    if (!gateway) throw new Error("the stack has no gateway");
    const target = `http://127.0.0.1:${gateway.port}`;
    const transport = gatewayTransport(target);
    const app = createClient(SeckillAppService, transport);
    const auth = createClient(AuthService, transport);
    const admin = createClient(AdminService, transport);
    const login = await auth.login({ username: "admin", password: "admin-password" });
    const adminToken = login.tokens?.accessToken ?? "";
    const tag = randomBytes(3).toString("hex");
    const buyers = await provisionBuyers(auth, adminToken, buyerCount, `bench-${tag}-`, progress);
    const asAdmin = { headers: { authorization: `Bearer ${adminToken}` } };

    if (wanted("buy") || wanted("halfrate")) {
      const { activityId } = await openSale({
        app,
        admin,
        adminToken,
        tag: `${tag}-a`,
        stock: 1_000_000_000,
        perUserLimit: 10_000,
        startDelayMs: 1000,
        progress,
      });
      const bank = new TokenBank();
      const tokenRun = await prefetch("mesh GetBuyToken", app, bank, activityId, buyers, {
        ms: 2 * (warmup + seconds) * 1000,
      });
      loadRow(
        "mesh GetBuyToken",
        "GetBuyToken through the gateway (fetched ahead of (a); counted apart)",
        tokenRun,
        ["RESERVED"],
        "whole fetch, no warm-up",
      );
      const closed: LoadModel = { kind: "closed", concurrency };
      const a = await measured("mesh (a)", bank.spender(app, false), activityId, buyers, closed, {
        attempts: () => bank.size,
      });
      loadRow(
        "mesh (a) buy path",
        "Buy through the gateway, every call a real reservation (huge stock)",
        a,
        ["RESERVED"],
      );
      // The backlog the order consumer still has when (a) ends.
      const drainStarted = Date.now();
      let stats = await admin.getStats({ activityId }, asAdmin);
      const backlog = Number(stats.total - stats.remaining - stats.orders);
      while (stats.orders < stats.total - stats.remaining && Date.now() - drainStarted < 30_000) {
        await new Promise((r) => setTimeout(r, 100));
        stats = await admin.getStats({ activityId }, asAdmin);
      }
      extra.drainAfterA = {
        reserved: Number(stats.total - stats.remaining),
        orders: Number(stats.orders),
        backlogAtEnd: backlog,
        drainedInMs: Date.now() - drainStarted,
      };
      progress(`  order backlog after (a): ${backlog}, drained in ${Date.now() - drainStarted} ms`);

      if (wanted("halfrate")) {
        const rate = Math.max(1, Math.round(rows.at(-1)!.rps / 2));
        const need = Math.ceil(rate * (warmup + seconds) * 1.1) + buyers.length;
        const halfBank = new TokenBank();
        await prefetch("mesh (c) tokens", app, halfBank, activityId, buyers, {
          ms: 60_000,
          count: need,
        });
        const c = await measured(
          "mesh (c)",
          halfBank.spender(app, false),
          activityId,
          buyers,
          { kind: "open", rate },
          { warmAttempts: Math.round(rate * warmup), attempts: () => Math.round(rate * seconds) },
        );
        loadRow(
          "mesh (c) half rate",
          `Buy in the open model at ${rate}/s (half of (a)); latency from the intended start`,
          c,
          ["RESERVED"],
        );
      }
    }

    if (wanted("soldout")) {
      const { activityId } = await openSale({
        app,
        admin,
        adminToken,
        tag: `${tag}-b`,
        stock: 1,
        perUserLimit: 1,
        startDelayMs: 1000,
        progress,
      });
      const bank = new TokenBank();
      await prefetch("mesh (b) tokens", app, bank, activityId, buyers, {
        ms: 60_000,
        count: buyers.length,
      });
      // The one unit goes to the first buyer; from then on every Buy is SOLD_OUT.
      const first = bank.spender(app, false);
      const { buyToken } = await first.getBuyToken(
        { activityId },
        { headers: { authorization: `Bearer ${buyers[0]!.token}` } },
      );
      const sold = await app.buy(
        { activityId, quantity: 1, buyToken, requestId: randomBytes(8).toString("hex") },
        { headers: { authorization: `Bearer ${buyers[0]!.token}` } },
      );
      progress(`  (b) first buy: ${BuyResult[sold.result]}`);
      const b = await measured("mesh (b)", bank.spender(app, true), activityId, buyers.slice(1), {
        kind: "closed",
        concurrency,
      });
      // TOKEN_INVALID: a reused token met an app instance whose local sold-out flag was not
      // set (yet, or any more), which then claimed the token; a refusal all the same.
      loadRow("mesh (b) sold-out path", "Buy through the gateway after the sell-out (stock 1)", b, [
        "SOLD_OUT",
        "TOKEN_INVALID",
      ]);
    }
  }
  // The ceiling again at the end: on a shared machine one window can be starved; the better
  // of the two is the ceiling the ratios use (both are in the JSON).
  if (wanted("edge")) {
    const first = rows.find((r) => r.name === "B-edge");
    await echoCase(
      "B-edge (again)",
      "the same, after the mesh cases",
      "connect-node",
      "connect-grpc",
    );
    const again = rows.at(-1)!;
    rows.pop();
    extra.edgeRuns = [first && { ...first }, again];
    if (first && again.rps > first.rps)
      Object.assign(first, again, {
        name: "B-edge",
        what: first.what,
        note: `${again.note}; best of 2 runs (first ${fixed(first.rps, 0)} req/s)`,
      });
    else if (first)
      first.note = `${first.note}; best of 2 runs (second ${fixed(again.rps, 0)} req/s)`;
  }
} finally {
  for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => {});
}

// ---------------------------------------------------------------------------
// Report

const row = (name: string) => rows.find((r) => r.name === name);
const edge = row("B-edge");
const mono = row("monolith");
const buy = row("mesh (a) buy path");
const soldOut = row("mesh (b) sold-out path");
const half = row("mesh (c) half rate");
const drain = row("mesh (d) order drain");
const pct = (a?: Row, b?: Row) => (a && b ? `${Math.round((a.rps / b.rps) * 100)} %` : "-");

interface Goal {
  goal: string;
  measured: string;
  met: boolean | undefined;
}
const ratioGoal = (goal: string, a: Row | undefined, b: Row | undefined, min: number): Goal => ({
  goal,
  measured: pct(a, b),
  met: a && b ? a.rps / b.rps >= min : undefined,
});
const goals: Goal[] = [
  ratioGoal("buy path ≥ 60 % of B-edge", buy, edge, 0.6),
  ratioGoal("buy path ≥ 70 % of the monolith", buy, mono, 0.7),
  ratioGoal("sold-out path ≥ 90 % of B-edge", soldOut, edge, 0.9),
  {
    goal: "p99 ≤ 50 ms at half the maximum rate",
    measured: half ? `p99 ${fixed(half.p99, 1)} ms (p50 ${fixed(half.p50, 1)} ms)` : "-",
    met: half ? half.p99 <= 50 : undefined,
  },
  {
    goal: "drain ≥ 10,000 orders/s",
    measured: drain ? `${fixed(drain.rps, 0)} orders/s` : "-",
    met: drain ? drain.rps >= 10_000 : undefined,
  },
];

const isMesh = (r: Row) => r.name.startsWith("mesh");
const table = [
  "| case | what | req/s | p50 ms | p99 ms | mesh / B-edge | mesh / monolith | errors | load avg | note |",
  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ...rows.map(
    (r) =>
      `| ${r.name} | ${r.what} | ${fixed(r.rps, 0)} | ${fixed(r.p50, 2)} | ${fixed(r.p99, 2)} | ${isMesh(r) && r !== drain ? pct(r, edge) : ""} | ${isMesh(r) && r !== drain ? pct(r, mono) : ""} | ${r.errors} | ${r.load.toFixed(2)} | ${r.note ?? ""} |`,
  ),
].join("\n");
const goalTable = [
  "| goal | measured | |",
  "|---|---|---|",
  ...goals.map(
    (g) =>
      `| ${g.goal} | ${g.measured} | ${g.met === undefined ? "not measured" : g.met ? "met" : "NOT MET"} |`,
  ),
].join("\n");

const loadAtEnd = os.loadavg().map((l) => Number(l.toFixed(2)));
const when = new Date().toISOString();
const markdown = [
  `# npm run bench, ${when}`,
  "",
  `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.os}.`,
  `Load average (1, 5, 15 min): ${machine.loadAverageAtStart.join(", ")} at start, ${loadAtEnd.join(", ")} at the end.`,
  "",
  `${concurrency} concurrent callers (closed model) on loopback, ${warmup} s warm-up then ${seconds} s measured per case;`,
  "one request = one call (for the mesh and the monolith: one Buy; buy tokens fetched ahead, GetBuyToken counted",
  "in its own row). Mesh = local stack as `seckill up` starts it (gateway ×1, seckill-app ×2, seckill-core ×2, auth, admin, order).",
  "B-redis: redis-benchmark without persistence (core's bench); the monolith and the mesh share the stack's redis-server (AOF everysec).",
  "",
  table,
  "",
  goalTable,
  "",
].join("\n");
console.log(markdown);
if (profDir) console.log(`CPU profiles: ${profDir}`);

const resultsDir = join(repoRoot, "bench", "results");
mkdirSync(resultsDir, { recursive: true });
const file = join(resultsDir, `${when.slice(0, 10)}${only ? `-only-${only.join("-")}` : ""}`);
writeFileSync(`${file}.md`, markdown);
writeFileSync(
  `${file}.json`,
  `${JSON.stringify({ when, machine, loadAverageAtEnd: loadAtEnd, concurrency, warmup, seconds, buyers: buyerCount, rows, goals, ...extra }, null, 2)}\n`,
);
progress(`saved ${file}.md and .json in ${((Date.now() - benchStarted) / 1000).toFixed(0)} s`);
process.exit(0);
