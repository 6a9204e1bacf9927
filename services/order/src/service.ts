/**
 * The order service as a ServiceSpec: stores, the stream consumer, the
 * sweepers and the routes, wired once. main.ts runs it; tests start it in
 * process with startService.
 */
import type { Kysely } from "kysely";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import { createDb, migrate, waitForMysql } from "../../shared/src/stores/mysql.ts";
import { closeRedis, createRedis, waitForRedis } from "../../shared/src/stores/redis.ts";
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
  return {
    name: "order",
    config,
    async setup(ctx) {
      const { log, cleanup } = ctx;
      const db = createDb<Database>(config.MYSQL_URI, { connectionLimit: config.MYSQL_POOL_SIZE });
      cleanup.add(() => db.destroy());
      const redis = createRedis(config.REDIS_URL, log, { connectionName: "order" });
      cleanup.add(() => closeRedis(redis));
      const subscriber = createRedis(config.REDIS_URL, log, { connectionName: "order-events" });
      cleanup.add(() => closeRedis(subscriber));
      await waitForMysql(db, log);
      await migrate(db as unknown as Kysely<unknown>, "order", migrations, log);
      await waitForRedis(redis, config.REDIS_URL);
      const catalog = new ActivityCatalog(ctx.etcd, log);
      cleanup.add(() => catalog.close());
      await catalog.start();

      const core = ctx.mesh.client(SeckillCoreService, "seckill-core");
      const store = new OrderStore(db);
      const events = new OrderEvents(redis, subscriber, log);
      cleanup.add(() => events.close());
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
      // Background work stops as soon as shutdown starts; the cleanup waits for it first.
      let stopping: Promise<unknown> | undefined;
      const stopWork = () => {
        stopping ??= Promise.all([consumer.stop(), sweepers.stop()]);
        return stopping;
      };
      ctx.shutdownSignal.addEventListener("abort", () => void stopWork(), { once: true });
      cleanup.add(stopWork);
      return orderRoutes(orders, { watchPollMs: config.WATCH_POLL_MS });
    },
  };
}
