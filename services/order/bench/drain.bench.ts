/**
 * `npm run bench:order`: the order consumer's drain rate. Fills an activity's
 * stream with order intents written as seckill-core writes them, starts the
 * consumer, and measures orders/s committed into MariaDB until the stream is
 * drained; then prints one line per configuration with the CPU each process
 * used (node = this consumer, mariadbd, redis-server), which shows what limits it.
 *
 *   --entries N        intents per case (50000)
 *   --warmup N         intents drained first, not measured: JIT and a fresh table's first pages (10000)
 *   --cases  a,b       batch×inflight pairs (200x1,500x1,500x2,1000x2,2000x2); the service
 *                      defaults are CONSUMER_BATCH 500 × CONSUMER_INFLIGHT 2
 *   --no-publish       skip the per-order PUBLISH on order:<id> (WatchOrder's push)
 *
 * Real private redis-server and mariadbd from the local stack; MariaDB keeps
 * its default durability (redo log flushed at every commit).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Kysely } from "kysely";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import { startStack } from "../../shared/src/stack/index.ts";
import { createDb, migrate } from "../../shared/src/stores/mysql.ts";
import { createRedis } from "../../shared/src/stores/redis.ts";
import { metricValue } from "../../shared/src/testing/metrics.ts";
import { OrderConsumer, staticSource } from "../src/consumer.ts";
import type { Database } from "../src/db.ts";
import { migrations } from "../src/migrations/index.ts";
import { appendIntents, makeIntent } from "../src/testing/contract.ts";
import { pending, rowCount } from "../src/testing/helpers.ts";

const { values: flags } = parseArgs({
  options: {
    entries: { type: "string", default: "50000" },
    warmup: { type: "string", default: "10000" },
    cases: { type: "string", default: "200x1,500x1,500x2,1000x2,2000x2" },
    "no-publish": { type: "boolean", default: false },
  },
});
const entries = Number(flags.entries);
const cases = flags.cases.split(",").map((c) => {
  const [batch, inflight] = c.split("x").map(Number);
  return { batch: batch!, inflight: inflight ?? 1 };
});

const progress = (line: string) => process.stderr.write(`${line}\n`);
const ticks = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuSeconds(pid: number): number {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / ticks;
  } catch {
    return Number.NaN;
  }
}

const log = createLogger("drain-bench", "warn");
progress("starting redis-server and mariadbd …");
const stack = await startStack({ redis: true, mariadb: true });
const redis = createRedis(stack.redis.url, log);
const db = createDb<Database>(stack.mariadb.uri);
await migrate(db as unknown as Kysely<unknown>, "order", migrations, log);

interface Measured {
  seconds: number;
  cpu: Record<string, number>;
}

/** Appends `count` intents to a fresh activity's stream, drains it, checks every row is there. */
async function drain(
  act: string,
  count: number,
  batch: number,
  inflight: number,
): Promise<Measured> {
  await appendIntents(
    redis,
    Array.from({ length: count }, () => makeIntent(act)),
  );
  const pids = { node: process.pid, mariadbd: stack.mariadb.pid, redis: stack.redis.pid };
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const consumer = new OrderConsumer(
    {
      redis,
      db,
      log,
      consumerName: "bench",
      batchSize: batch,
      inflight,
      blockMs: 500,
      claimIdleMs: 600_000,
      claimIntervalMs: 600_000,
      statsIntervalMs: 600_000,
      publishCreated: !flags["no-publish"],
    },
    staticSource([act]),
  );
  const started = performance.now();
  consumer.start();
  const handled = () =>
    metricValue(metricsRegistry, "seckill_order_consumed_total", { activity: act });
  while ((await handled()) < count) await sleep(20);
  const seconds = (performance.now() - started) / 1000;
  const cpu = Object.fromEntries(
    Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p) - (cpuBefore[k] ?? 0)]),
  );
  await consumer.stop();
  const rows = await rowCount(db, act);
  const left = (await pending(redis, act)).count;
  if (rows !== count || left !== 0)
    throw new Error(`${act}: ${rows} rows, ${left} pending after the drain`);
  return { seconds, cpu };
}

const results: string[] = [];
try {
  if (Number(flags.warmup) > 0) {
    progress(`warm-up: draining ${flags.warmup} entries …`);
    await drain("bench-warmup", Number(flags.warmup), cases[0]!.batch, cases[0]!.inflight);
  }
  for (const [index, c] of cases.entries()) {
    const act = `bench-${index}-${c.batch}x${c.inflight}`;
    progress(`${act}: draining ${entries} entries …`);
    const { seconds, cpu } = await drain(act, entries, c.batch, c.inflight);
    const rate = entries / seconds;
    const share = (k: string) => `${k} ${((cpu[k] ?? 0) / seconds).toFixed(2)}`;
    const line = `batch ${String(c.batch).padStart(4)} × inflight ${c.inflight}: ${entries} orders in ${seconds.toFixed(2)} s = ${Math.round(rate).toLocaleString("en-US").padStart(6)} orders/s   (CPU cores busy: ${share("node")}, ${share("mariadbd")}, ${share("redis")})`;
    results.push(line);
    progress(line);
  }
} finally {
  await redis.quit();
  await db.destroy();
  await stack.stop();
}

console.log(
  `\norder drain rate into MariaDB (${entries} stream entries per case, publish ${flags["no-publish"] ? "off" : "on"}, ${(await import("node:os")).cpus().length} cores):`,
);
for (const line of results) console.log(line);
