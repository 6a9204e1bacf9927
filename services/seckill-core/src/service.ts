/**
 * seckill-core as a ServiceSpec: main.ts runs it as a process, tests start it
 * in-process with startService. Opens two Redis connections (commands, and a
 * subscriber for restock messages) and watches the activity catalog in etcd.
 */

import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import { listenForRestock, SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { closeRedis, createRedis, waitForRedis } from "../../shared/src/stores/redis.ts";
import type { CoreConfig } from "./config.ts";
import { soldOutMetrics } from "./metrics.ts";
import { coreRoutes } from "./routes.ts";
import { StockStore } from "./store.ts";
import { CatalogSync } from "./warm-up.ts";

export const SERVICE_NAME = "seckill-core";

export function coreService(config: CoreConfig): ServiceSpec<CoreConfig> {
  return {
    name: SERVICE_NAME,
    config,
    async setup(ctx) {
      const { cleanup } = ctx;
      const redis = createRedis(config.REDIS_URL, ctx.log, {
        commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
      });
      cleanup.add(() => closeRedis(redis));
      await waitForRedis(redis, config.REDIS_URL);
      // A subscribed connection only waits for messages: no timeout, retry forever.
      const subscriber = createRedis(config.REDIS_URL, ctx.log, { maxRetriesPerRequest: null });
      cleanup.add(() => closeRedis(subscriber));

      const store = new StockStore(redis);
      const soldOut = new SoldOutFlags(config.SOLD_OUT_CACHE_MS, Date.now, soldOutMetrics);
      await listenForRestock(subscriber, soldOut, ctx.log);

      const catalog = new ActivityCatalog(ctx.etcd, ctx.log);
      cleanup.add(() => catalog.close());
      const sync = new CatalogSync({ catalog, store, log: ctx.log });
      cleanup.add(() => sync.close());
      sync.start();
      // Serving does not wait for etcd: the definitions that matter are already in Redis.
      void catalog.start();

      return coreRoutes({ store, soldOut, maxBatch: config.MAX_BATCH, log: ctx.log });
    },
  };
}
