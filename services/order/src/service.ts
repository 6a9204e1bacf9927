/**
 * The order service as a ServiceSpec: stores, the stream consumer, the
 * sweepers and the routes, wired once. main.ts runs it; tests start it in
 * process with startService.
 */
import type { Kysely } from "kysely";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import { backoffMs, sleep } from "../../shared/src/stores/etcd.ts";
import { createDb, migrate } from "../../shared/src/stores/mysql.ts";
import { closeRedis, createRedis } from "../../shared/src/stores/redis.ts";
import type { OrderConfig } from "./config.ts";
import { catalogSource, OrderConsumer } from "./consumer.ts";
import type { Database } from "./db.ts";
import { OrderEvents } from "./events.ts";
import { migrations } from "./migrations/index.ts";
import { Orders } from "./orders.ts";
import { orderRoutes } from "./routes.ts";
import { StockSettler } from "./settlement.ts";
import { OrderStore } from "./store.ts";
import { startSweepers } from "./timeouts.ts";

export function orderService(config: OrderConfig): ServiceSpec<OrderConfig> {
  // What setup opened, closed in reverse order by close() (also when setup fails half-way).
  const closers: (() => Promise<unknown> | unknown)[] = [];
  return {
    name: "order",
    config,
    async setup(ctx) {
      const { log } = ctx;
      const db = createDb<Database>(config.MYSQL_URI, { connectionLimit: config.MYSQL_POOL_SIZE });
      closers.push(() => db.destroy());
      const redis = createRedis(config.REDIS_URL, log, { connectionName: "order" });
      closers.push(() => closeRedis(redis));
      const subscriber = createRedis(config.REDIS_URL, log, { connectionName: "order-events" });
      closers.push(() => closeRedis(subscriber));
      await migrateWhenReachable(db, log);
      const catalog = new ActivityCatalog(ctx.etcd, log);
      closers.push(() => catalog.close());
      await catalog.start();

      const core = ctx.mesh.client(SeckillCoreService, "seckill-core");
      const store = new OrderStore(db);
      const events = new OrderEvents(redis, subscriber, log);
      closers.push(() => events.close());
      const settler = new StockSettler(core, store, log);
      const orders = new Orders({ store, settler, events, core, activities: catalog, log });

      const consumer = new OrderConsumer(
        {
          redis,
          db,
          log,
          tracer: ctx.tracer,
          consumerName: config.INSTANCE_ID,
          batchSize: config.CONSUMER_BATCH,
          inflight: config.CONSUMER_INFLIGHT,
          blockMs: config.CONSUMER_BLOCK_MS,
          claimIdleMs: config.CLAIM_IDLE_MS,
          claimIntervalMs: config.CLAIM_INTERVAL_MS,
          statsIntervalMs: config.STREAM_STATS_INTERVAL_MS,
        },
        catalogSource(catalog),
      );
      const sweepers = startSweepers({
        store,
        settler,
        events,
        log,
        sweepIntervalMs: config.SWEEP_INTERVAL_MS,
        sweepBatch: config.SWEEP_BATCH,
        settleIntervalMs: config.SETTLE_INTERVAL_MS,
        settleGraceMs: config.SETTLE_GRACE_MS,
      });
      consumer.start();
      // Background work stops as soon as shutdown starts; close() waits for it first.
      let stopping: Promise<unknown> | undefined;
      const stopWork = () => {
        stopping ??= Promise.all([consumer.stop(), sweepers.stop()]);
        return stopping;
      };
      ctx.shutdownSignal.addEventListener("abort", () => void stopWork(), { once: true });
      closers.push(stopWork);
      return orderRoutes(orders, { watchPollMs: config.WATCH_POLL_MS });
    },
    async close() {
      for (const close of closers.splice(0).reverse()) await close();
    },
  };
}

/** How long start-up waits for MySQL before giving up (the process then exits 1). */
const MYSQL_START_TIMEOUT_MS = 15_000;

/** Runs the migrations, retrying while MySQL is not reachable yet (pods start in any order). */
async function migrateWhenReachable(db: Kysely<Database>, log: Logger): Promise<void> {
  const deadline = Date.now() + MYSQL_START_TIMEOUT_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      await migrate(db as unknown as Kysely<unknown>, "order", migrations, log);
      return;
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      const unreachable = ["ECONNREFUSED", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"].includes(code);
      if (!unreachable || Date.now() > deadline) throw err;
      log.warn({ code }, "MySQL not reachable yet; retrying the migrations");
      await sleep(backoffMs(attempt, 2000));
    }
  }
}

/** QUIT, or drop the connection when Redis does not answer promptly (it may be down). */
