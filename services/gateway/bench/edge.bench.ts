/**
 * What the edge costs per call: the gateway (main.ts) as its own process in
 * front of a fake seckill-app / auth that answer at once (fake-upstream.ts,
 * one process each), on a private etcd and Redis, loaded from this process
 * with Connect (binary) over h2c:
 *
 *   GetServerTime (public: gate + forward), Buy → RESERVED (JWT from the
 *   cache + forward), Buy → SOLD_OUT (answered at the edge), Buy without a
 *   token (refused at the gate), and GetServerTime straight to the fake app
 *   over grpc-js (the hop behind the edge, for comparison).
 *
 *   node --import tsx services/gateway/bench/edge.bench.ts [--seconds 4] [--callers 64]
 *     [--cpu-prof-dir DIR]
 *
 * Prints a markdown table: calls/s, latency, and CPU µs per call of each process.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { generateSigningKey, keyRing, TokenIssuer } from "../../auth/src/testing.ts";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { startEtcd, startRedis } from "../../shared/src/stack/index.ts";
import { startServiceProcess } from "../../shared/src/testing/service-process.ts";
import { createGrpcTransport } from "../../shared/src/transport/grpc-client.ts";

const { values: flags } = parseArgs({
  options: {
    seconds: { type: "string", default: "4" },
    warmup: { type: "string", default: "1" },
    callers: { type: "string", default: "64" },
    "cpu-prof-dir": { type: "string" },
  },
});
const seconds = Number(flags.seconds);
const warmupSeconds = Number(flags.warmup);
const callers = Number(flags.callers);
const progress = (line: string) => process.stderr.write(`${line}\n`);

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function load(call: () => Promise<unknown>, ms: number) {
  const latencies: number[] = [];
  let errors = 0;
  let firstError = "";
  const until = performance.now() + ms;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        try {
          await call();
          latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ||= String(err);
        }
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ??
    Number.NaN;
  return { calls: latencies.length, errors, firstError, p50: at(50), p99: at(99) };
}

const key = generateSigningKey("bench");
const issuer = new TokenIssuer(keyRing([key.key]), {
  issuer: "seckill-auth",
  audience: "seckill",
  accessTtlSeconds: 3600,
  refreshTtlSeconds: 3600,
});

const [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
const env = {
  ETCD_ENDPOINTS: etcd.endpoints.join(","),
  REDIS_URL: redis.url,
  BENCH_JWT_KEY: JSON.stringify([key.entry]),
  LOG_LEVEL: "warn",
  RATE_LIMIT_IP_RPS: "0",
  RATE_LIMIT_GLOBAL_RPS: "0",
  SOLD_OUT_TTL_MS: "3600000",
};
const upstreams = await Promise.all(
  ["auth", "seckill-app"].map((name) =>
    startServiceProcess({
      entry: "services/gateway/bench/fake-upstream.ts",
      env: { ...env, SERVICE_NAME: name, INSTANCE_ID: `${name}-bench`, LOG_LEVEL: "info" },
    }),
  ),
);
const gateway = await startServiceProcess({
  entry: "services/gateway/src/main.ts",
  env: {
    ...env,
    INSTANCE_ID: "gateway-bench",
    LOG_LEVEL: "info",
    ...(flags["cpu-prof-dir"]
      ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${flags["cpu-prof-dir"]}` }
      : {}),
  },
  keepLogs: false,
});
const app = upstreams[1]!;

const edge = (): Client<typeof SeckillAppService> =>
  createClient(
    SeckillAppService,
    createConnectTransport({
      baseUrl: `http://127.0.0.1:${gateway.port}`,
      httpVersion: "2",
      useBinaryFormat: true,
    }),
  );
const viaEdge = edge();
const direct = createClient(
  SeckillAppService,
  createGrpcTransport({ address: `127.0.0.1:${app.port}` }),
);
const token = (await issuer.access({ id: "bench-user", role: "user" })).token;
const headers = { authorization: `Bearer ${token}` };
let n = 0;
const buy = (activityId: string, h: Record<string, string> = headers) =>
  viaEdge.buy({ activityId, quantity: 1, buyToken: "t", requestId: `r${n++}` }, { headers: h });

// The edge learns that "sold" is sold out from the first answer.
const first = await buy("sold");
if (first.result !== BuyResult.SOLD_OUT) throw new Error("fake upstream did not answer SOLD_OUT");

const scenarios: [string, () => Promise<unknown>][] = [
  ["edge GetServerTime (public)", () => viaEdge.getServerTime({})],
  ["edge Buy → RESERVED (JWT, forwarded)", () => buy("live")],
  ["edge Buy → SOLD_OUT (answered at the edge)", () => buy("sold")],
  ["edge Buy without token → UNAUTHENTICATED", () => buy("live", {}).catch(() => {})],
  ["direct grpc-js GetServerTime (no edge)", () => direct.getServerTime({})],
];

const rows: string[] = [];
try {
  for (const [name, call] of scenarios) {
    progress(`${name} …`);
    await load(call, warmupSeconds * 1000);
    const pids = { gateway: gateway.pid, app: app.pid };
    const before = { gateway: cpuSeconds(pids.gateway), app: cpuSeconds(pids.app) };
    const self0 = process.cpuUsage();
    const r = await load(call, seconds * 1000);
    const self = process.cpuUsage(self0);
    const per = (s: number) => ((s * 1e6) / Math.max(1, r.calls)).toFixed(0);
    rows.push(
      `| ${name} | ${(r.calls / seconds).toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${per(cpuSeconds(pids.gateway) - before.gateway)} | ${per(cpuSeconds(pids.app) - before.app)} | ${per((self.user + self.system) / 1e6)} | ${r.errors}${r.firstError ? ` (${r.firstError.slice(0, 60)})` : ""} |`,
    );
  }
} finally {
  await gateway.stop();
  for (const u of upstreams) await u.stop();
  await Promise.all([etcd.stop(), redis.stop()]);
}

console.log(
  `\n${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ${callers} callers, ${seconds} s per row\n`,
);
console.log(
  "| scenario | calls/s | p50 ms | p99 ms | gateway CPU µs/call | app CPU µs/call | client CPU µs/call | errors |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const row of rows) console.log(row);
process.exit(0);
