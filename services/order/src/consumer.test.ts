/**
 * The stream consumer against a real Redis and MariaDB. Stream entries are
 * written here exactly as the data-plane contract says (testing/contract.ts),
 * so these tests do not depend on seckill-core's code.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Kysely, sql } from "kysely";
import { orderChannel } from "../../shared/src/data-plane/keys.ts";
import {
  deadLetterStream as deadLetterKey,
  ORDER_CONSUMER_GROUP as GROUP,
  encodeOrderIntent as intentFields,
  orderIntentStream as streamKey,
} from "../../shared/src/data-plane/order-intent.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";
import { type Stack, startStack } from "../../shared/src/stack/index.ts";
import { createDb, migrate } from "../../shared/src/stores/mysql.ts";
import { createRedis, type Redis } from "../../shared/src/stores/redis.ts";
import { metricValue, pollUntil } from "../../shared/src/testing/index.ts";
import { type ConsumerOptions, OrderConsumer, staticSource } from "./consumer.ts";
import type { Database } from "./db.ts";
import { migrations } from "./migrations/index.ts";
import { appendIntents, appendRaw, makeIntent } from "./testing/contract.ts";
import { pending, rowCount } from "./testing/helpers.ts";

const log = createLogger("order-consumer-test", process.env.TEST_LOG_LEVEL ?? "silent");

describe("order stream consumer (real Redis + MariaDB)", { timeout: 240_000 }, () => {
  let stack: Stack<{ redis: true; mariadb: true }>;
  let redis: Redis;
  let db: Kysely<Database>;
  const consumers: OrderConsumer[] = [];

  const consumer = (activityId: string, o: Partial<ConsumerOptions> = {}) => {
    const c = new OrderConsumer(
      {
        redis,
        db,
        log,
        consumerName: "order-a",
        batchSize: 200,
        inflight: 2,
        blockMs: 200,
        claimIdleMs: 60_000,
        claimIntervalMs: 100,
        statsIntervalMs: 200,
        ...o,
      },
      staticSource([activityId]),
    );
    consumers.push(c);
    c.start();
    return c;
  };

  /** Reads entries as a consumer that then "dies": they stay pending under its name. */
  const readAs = async (name: string, activityId: string, count: number) => {
    await redis
      .call("XGROUP", "CREATE", streamKey(activityId), GROUP, "0", "MKSTREAM")
      .catch(() => {});
    const reply = (await redis.call(
      "XREADGROUP",
      "GROUP",
      GROUP,
      name,
      "COUNT",
      count,
      "STREAMS",
      streamKey(activityId),
      ">",
    )) as [string, [string, string[]][]][] | null;
    return reply?.[0]?.[1] ?? [];
  };

  before(async () => {
    stack = await startStack({ redis: true, mariadb: true });
    redis = createRedis(stack.redis.url, log);
    db = createDb<Database>(stack.mariadb.uri);
    await migrate(db as unknown as Kysely<unknown>, "order", migrations, log);
  });
  after(async () => {
    await Promise.all(consumers.map((c) => c.stop()));
    await redis?.quit();
    await db?.destroy();
    await stack?.stop();
  });

  it("turns N entries into exactly N rows, acknowledges them all and announces each order", async () => {
    const act = "c-basic";
    const n = 3000;
    const intents = Array.from({ length: n }, () => makeIntent(act));
    intents[7] = makeIntent(act, { quantity: 3, unitPriceCents: 250, currency: "EUR" });
    const sub = redis.duplicate();
    const announced: string[] = [];
    sub.on("message", (_channel, message) => announced.push(message));
    await sub.subscribe(orderChannel(intents[7]!.orderId));
    await appendIntents(redis, intents);
    const c = consumer(act);
    const tookMs = await pollUntil(async () => (await rowCount(db, act)) === n, {
      timeoutMs: 30_000,
      message: "rows",
      intervalMs: 25,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 5000,
      message: "no pending",
      intervalMs: 25,
    });
    assert.equal(await rowCount(db, act), n);

    const row = await db
      .selectFrom("orders")
      .selectAll()
      .where("id", "=", intents[7]!.orderId)
      .executeTakeFirstOrThrow();
    assert.equal(row.user_id, intents[7]!.userId);
    assert.equal(row.quantity, 3);
    assert.equal(Number(row.unit_price_cents), 250);
    assert.equal(Number(row.amount_cents), 750);
    assert.equal(row.currency, "EUR");
    assert.equal(row.status, "PENDING_PAYMENT");
    assert.equal(row.request_id, intents[7]!.requestId);
    assert.equal(row.payment_deadline.getTime(), intents[7]!.deadlineMs);
    assert.equal(row.created_at.getTime(), intents[7]!.createdMs);
    assert.equal(row.stock_settled, 0);
    await pollUntil(() => announced.includes("PENDING_PAYMENT"), {
      timeoutMs: 2000,
      message: "the announcement",
      intervalMs: 25,
    });
    await sub.quit();

    assert.equal(
      await metricValue(metricsRegistry, "seckill_order_consumed_total", {
        activity: act,
        outcome: "inserted",
      }),
      n,
    );
    assert.ok(
      (await metricValue(metricsRegistry, "seckill_order_consumer_batch_size", {
        activity: act,
      })) >=
        n / 200,
    );
    await pollUntil(
      async () =>
        (await metricValue(metricsRegistry, "seckill_order_stream_length", { activity: act })) ===
        n,
      { timeoutMs: 3000, message: "the stream length gauge", intervalMs: 25 },
    );
    console.log(
      `  ${n} entries → ${n} rows in ${tookMs} ms (${Math.round((n / tookMs) * 1000)}/s)`,
    );
    await c.stop();
  });

  it("reads its own pending entries first after a restart; redelivered entries make no second row", async () => {
    const act = "c-restart";
    const intents = Array.from({ length: 600 }, () => makeIntent(act));
    await appendIntents(redis, intents);
    // "order-r" read 400 entries and died; it had committed 150 of them but not acknowledged.
    const read = await readAs("order-r", act, 400);
    assert.equal(read.length, 400);
    const committed = intents.slice(0, 150);
    await db
      .insertInto("orders")
      .values(
        committed.map((i) => ({
          id: i.orderId,
          activity_id: act,
          product_id: i.productId,
          user_id: i.userId,
          quantity: i.quantity,
          unit_price_cents: i.unitPriceCents,
          amount_cents: i.unitPriceCents * i.quantity,
          currency: i.currency,
          status: "PENDING_PAYMENT" as const,
          request_id: i.requestId,
          created_at: new Date(i.createdMs),
          payment_deadline: new Date(i.deadlineMs),
          paid_at: null,
          cancelled_at: null,
          cancel_reason: null,
          payment_id: null,
        })),
      )
      .execute();
    // The same intents appended a second time (a duplicated append): same order ids.
    await appendIntents(redis, intents.slice(500, 600));
    assert.equal((await pending(redis, act)).consumers["order-r"], 400);

    // Restarted with the same name; claiming is off (long idle), so only the pending read finds them.
    consumer(act, { consumerName: "order-r" });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 20_000,
      message: "no pending",
      intervalMs: 25,
    });
    await pollUntil(
      async () =>
        (await metricValue(metricsRegistry, "seckill_order_consumed_total", { activity: act })) ===
        700,
      { timeoutMs: 5000, message: "every entry handled", intervalMs: 25 },
    );
    assert.equal(await rowCount(db, act), 600);
    assert.equal(
      await metricValue(metricsRegistry, "seckill_order_consumed_total", {
        activity: act,
        outcome: "duplicate",
      }),
      250,
      "150 committed-but-unacked + 100 appended twice",
    );
    assert.equal(
      await metricValue(metricsRegistry, "seckill_order_consumer_reclaimed_total", {
        activity: act,
      }),
      0,
    );
  });

  it("takes over a dead consumer's pending entries with XAUTOCLAIM after CLAIM_IDLE_MS, and an XCLAIMed entry makes no second row", async () => {
    const act = "c-claim";
    const intents = Array.from({ length: 1000 }, () => makeIntent(act));
    await appendIntents(redis, intents);
    await readAs("order-dead", act, 700);
    // Another consumer XCLAIMs one of them and "commits" it, then dies too: two owners' history.
    const [[firstId]] = (await redis.call(
      "XPENDING",
      streamKey(act),
      GROUP,
      "-",
      "+",
      1,
      "order-dead",
    )) as [[string]];
    await redis.call("XCLAIM", streamKey(act), GROUP, "order-zombie", 0, firstId);
    assert.deepEqual((await pending(redis, act)).consumers, {
      "order-dead": 699,
      "order-zombie": 1,
    });

    consumer(act, { consumerName: "order-live", claimIdleMs: 300 });
    await pollUntil(async () => (await rowCount(db, act)) === 1000, {
      timeoutMs: 20_000,
      message: "all rows",
      intervalMs: 25,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 5000,
      message: "no pending",
      intervalMs: 25,
    });
    assert.equal(await rowCount(db, act), 1000);
    assert.equal(
      await metricValue(metricsRegistry, "seckill_order_consumer_reclaimed_total", {
        activity: act,
      }),
      700,
    );
    assert.equal(
      await metricValue(metricsRegistry, "seckill_order_consumed_total", {
        activity: act,
        outcome: "inserted",
      }),
      1000,
    );
  });

  it("acknowledges only after COMMIT: while inserts fail the entries stay pending, then they are inserted", async () => {
    const act = "c-fail";
    await sqlRun(db, "RENAME TABLE orders TO orders_away");
    try {
      await appendIntents(
        redis,
        Array.from({ length: 300 }, () => makeIntent(act)),
      );
      consumer(act, { consumerName: "order-f" });
      await pollUntil(
        async () =>
          (await metricValue(metricsRegistry, "seckill_order_consumer_errors_total", {
            activity: act,
            stage: "insert",
          })) >= 6,
        { timeoutMs: 20_000, message: "failed inserts", intervalMs: 25 },
      );
      const p = await pending(redis, act);
      assert.ok(p.count > 0 && p.count <= 300, `pending ${p.count}`);
      assert.equal(p.consumers["order-f"], p.count);
    } finally {
      await sqlRun(db, "RENAME TABLE orders_away TO orders");
    }
    await pollUntil(async () => (await rowCount(db, act)) === 300, {
      timeoutMs: 30_000,
      message: "rows after recovery",
      intervalMs: 25,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 5000,
      message: "no pending",
      intervalMs: 25,
    });
    assert.equal(await rowCount(db, act), 300);
  });

  it("survives MariaDB killed with SIGKILL mid-batch: every entry ends as exactly one row", async () => {
    const act = "c-dbkill";
    const n = 20_000;
    await appendIntents(
      redis,
      Array.from({ length: n }, () => makeIntent(act)),
    );
    consumer(act, { consumerName: "order-k", batchSize: 500 });
    await pollUntil(async () => (await rowCount(db, act)) >= 3000, {
      timeoutMs: 30_000,
      message: "draining to start",
      intervalMs: 25,
    });
    await stack.mariadb.kill("SIGKILL");
    const { count } = await pending(redis, act);
    await new Promise((r) => setTimeout(r, 500));
    await stack.mariadb.restart();
    await pollUntil(async () => (await rowCount(db, act).catch(() => -1)) === n, {
      timeoutMs: 90_000,
      message: "all rows",
      intervalMs: 200,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 10_000,
      message: "no pending",
      intervalMs: 25,
    });
    assert.equal(await rowCount(db, act), n);
    const errors = await metricValue(metricsRegistry, "seckill_order_consumer_errors_total", {
      activity: act,
    });
    console.log(
      `  killed MariaDB with ${count} entries pending; ${errors} consumer errors; ${await metricValue(metricsRegistry, "seckill_order_consumed_total", { activity: act, outcome: "duplicate" })} redelivered entries ignored; ${n} rows`,
    );
  });

  it("moves malformed entries to the dead-letter stream, acknowledged, without blocking the good ones", async () => {
    const act = "c-dead";
    const good = Array.from({ length: 20 }, () => makeIntent(act));
    await appendIntents(redis, good.slice(0, 10));
    const valid = intentFields(makeIntent(act));
    const without = (name: string) => {
      const i = valid.indexOf(name);
      return [...valid.slice(0, i), ...valid.slice(i + 2)];
    };
    const replace = (name: string, value: string) =>
      valid.map((v, i) => (i > 0 && valid[i - 1] === name && i % 2 === 1 ? value : v));
    const badIds = [
      await appendRaw(redis, act, without("qty")),
      await appendRaw(redis, act, replace("qty", "-1")),
      await appendRaw(redis, act, replace("act", "another-activity")),
      await appendRaw(redis, act, replace("oid", "X".repeat(40))),
      await appendRaw(redis, act, replace("dl", "soon")),
      await appendRaw(redis, act, ["hello", "world"]),
    ];
    await appendIntents(redis, good.slice(10));
    consumer(act, { consumerName: "order-d" });
    await pollUntil(async () => (await rowCount(db, act)) === 20, {
      timeoutMs: 10_000,
      message: "good rows",
      intervalMs: 25,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 5000,
      message: "no pending",
      intervalMs: 25,
    });
    const dead = (await redis.xrange(deadLetterKey(act), "-", "+")) as [string, string[]][];
    assert.equal(dead.length, badIds.length);
    const reasons = dead.map(([, f]) => f[f.indexOf("_reason") + 1]!);
    assert.deepEqual(
      dead.map(([, f]) => f[f.indexOf("_entry_id") + 1]),
      badIds,
    );
    assert.match(reasons[0]!, /qty missing/);
    assert.match(reasons[1]!, /qty must be an integer/);
    assert.match(reasons[2]!, /does not match the stream's activity/);
    assert.match(reasons[3]!, /oid must have 1\.\.26 characters/);
    assert.match(reasons[4]!, /dl must be an integer/);
    assert.match(reasons[5]!, /oid missing/);
    assert.equal(
      await metricValue(metricsRegistry, "seckill_order_consumed_total", {
        activity: act,
        outcome: "dead_lettered",
      }),
      6,
    );
  });

  it("stops cleanly: every entry read is either committed and acknowledged or still pending", async () => {
    const act = "c-stop";
    const n = 10_000;
    const intents = Array.from({ length: n }, () => makeIntent(act));
    await appendIntents(redis, intents);
    const c = consumer(act, { consumerName: "order-s", batchSize: 250 });
    await pollUntil(async () => (await rowCount(db, act)) >= 1000, {
      timeoutMs: 20_000,
      message: "draining",
      intervalMs: 25,
    });
    await c.stop();
    const rows = await rowCount(db, act);
    const p = await pending(redis, act);
    const info = (await redis.call("XINFO", "GROUPS", streamKey(act))) as unknown[][];
    const group = info[0]!;
    const delivered = Number(group[group.indexOf("entries-read") + 1]);
    // Delivered = committed (rows) + still pending; nothing acknowledged without its row.
    assert.equal(
      rows + p.count,
      delivered,
      `rows ${rows} + pending ${p.count} vs delivered ${delivered}`,
    );
    assert.ok(rows < n, "stopped mid-way");
    // A restart with the same name finishes the job.
    consumer(act, { consumerName: "order-s" });
    await pollUntil(async () => (await rowCount(db, act)) === n, {
      timeoutMs: 30_000,
      message: "the rest",
      intervalMs: 25,
    });
    await pollUntil(async () => (await pending(redis, act)).count === 0, {
      timeoutMs: 5000,
      message: "no pending",
      intervalMs: 25,
    });
    console.log(
      `  stopped after ${rows} rows with ${p.count} pending; restarted and finished ${n}`,
    );
  });
});

async function sqlRun(db: Kysely<Database>, statement: string): Promise<void> {
  await sql.raw(statement).execute(db);
}
