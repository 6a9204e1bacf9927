/**
 * SIGKILL of an order process in the middle of draining a stream, then a new
 * process with another INSTANCE_ID: XAUTOCLAIM takes over the dead one's
 * pending entries; in the end rows == entries exactly. Both run main.ts as a
 * child process, as Kubernetes would run them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Kysely } from "kysely";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { type Stack, startStack } from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import { createDb } from "../../shared/src/stores/mysql.ts";
import { createRedis, type Redis } from "../../shared/src/stores/redis.ts";
import { metricValue, pollUntil } from "../../shared/src/testing/index.ts";
import {
  type ServiceProcess,
  startServiceProcess,
} from "../../shared/src/testing/service-process.ts";
import type { Database } from "./db.ts";
import { appendIntents, makeIntent } from "./testing/contract.ts";
import { publishActivity } from "./testing/harness.ts";
import { pending, rowCount } from "./testing/helpers.ts";

const log = createLogger("order-kill-test", "silent");

describe("order consumer process killed with SIGKILL mid-drain", { timeout: 180_000 }, () => {
  let stack: Stack<{ redis: true; mariadb: true; etcd: true }>;
  let redis: Redis;
  let db: Kysely<Database>;
  let etcd: Etcd3;
  const children: ServiceProcess[] = [];

  const start = async (instanceId: string) => {
    const child = await startServiceProcess({
      entry: "services/order/src/main.ts",
      env: {
        INSTANCE_ID: instanceId,
        ETCD_ENDPOINTS: stack.etcd.endpoints.join(","),
        REDIS_URL: stack.redis.url,
        MYSQL_URI: stack.mariadb.uri,
        REGISTRATION_TTL_SECONDS: "3",
        SHUTDOWN_DELAY_MS: "0",
        CONSUMER_BATCH: "200",
        CONSUMER_BLOCK_MS: "200",
        CLAIM_IDLE_MS: "2000",
        CLAIM_INTERVAL_MS: "500",
      },
      readyTimeoutMs: 30_000,
    });
    children.push(child);
    return child;
  };

  before(async () => {
    stack = await startStack({ redis: true, mariadb: true, etcd: true });
    redis = createRedis(stack.redis.url, log);
    db = createDb<Database>(stack.mariadb.uri);
    etcd = createEtcd(stack.etcd.endpoints);
  });
  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    etcd?.close();
    await redis?.quit();
    await db?.destroy();
    await stack?.stop();
  });

  it("loses no order and duplicates none: the next consumer takes over the dead one's pending entries", async () => {
    const act = "kill-1";
    const n = 40_000;
    await publishActivity(etcd, act, { totalStock: n });
    const intents = Array.from({ length: n }, () => makeIntent(act));
    await appendIntents(redis, intents);

    const victim = await start("order-victim");
    // Kill it while it holds read-but-unacknowledged entries, well before the end.
    let rowsAtKill = 0;
    let pendingAtKill = 0;
    await pollUntil(
      async () => {
        const [rows, p] = await Promise.all([rowCount(db, act), pending(redis, act)]);
        if (rows >= 5000 && (p.consumers["order-victim"] ?? 0) > 0) {
          victim.kill("SIGKILL");
          rowsAtKill = rows;
          return true;
        }
        return false;
      },
      { timeoutMs: 60_000, message: "the victim to be mid-drain", intervalMs: 5 },
    );
    assert.deepEqual(await victim.exited, { code: null, signal: "SIGKILL" });
    pendingAtKill = (await pending(redis, act)).consumers["order-victim"] ?? 0;
    const rowsAfterKill = await rowCount(db, act);
    assert.ok(pendingAtKill > 0, "the victim died holding pending entries");
    assert.ok(rowsAfterKill < n, `killed mid-way (${rowsAfterKill} of ${n} rows)`);

    const heir = await start("order-heir");
    await pollUntil(async () => (await rowCount(db, act)) === n, {
      timeoutMs: 90_000,
      message: "every row",
      intervalMs: 100,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 30_000,
      message: "nothing pending",
      intervalMs: 100,
    });

    const ids = await db.selectFrom("orders").select("id").where("activity_id", "=", act).execute();
    assert.equal(ids.length, n, "exactly one row per entry");
    const want = new Set(intents.map((i) => i.orderId));
    assert.equal(want.size, n);
    assert.ok(
      ids.every((r) => want.has(r.id)),
      "every row is one of the entries",
    );

    const metrics = await (await fetch(`http://127.0.0.1:${heir.metricsPort}/metrics`)).text();
    const reclaimed = await metricValue(metrics, "seckill_order_consumer_reclaimed_total", {
      activity: act,
    });
    const duplicates = await metricValue(metrics, "seckill_order_consumed_total", {
      activity: act,
      outcome: "duplicate",
    });
    assert.ok(
      reclaimed >= pendingAtKill,
      `reclaimed ${reclaimed} ≥ ${pendingAtKill} pending at kill`,
    );
    const tookOver = heir.logs.find(
      (l) => l.msg === "took over pending entries of another consumer",
    );
    assert.ok(tookOver, "the heir logged the take-over");
    console.log(
      `  victim killed at ${rowsAtKill} rows holding ${pendingAtKill} pending entries; heir reclaimed ${reclaimed} (${duplicates} already committed by the victim, ignored); ${n} rows, none lost, none duplicated`,
    );
    await heir.stop();
    assert.deepEqual(await heir.exited, { code: 0, signal: null }, "a clean SIGTERM shutdown");
  });
});
