/**
 * seckill-core as a ServiceSpec: main.ts runs it as a process, tests start it
 * in-process with startService. Opens two Redis connections (commands, and a
 * subscriber for restock messages) and watches the activity catalog in etcd.
 */

import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import {
  closeRedis,
  createRedis,
  type Redis,
  waitForRedis,
} from "../../shared/src/stores/redis.ts";
import type { CoreConfig } from "./config.ts";
import { coreRoutes } from "./routes.ts";
import { listenForRestock, SoldOutFlags } from "./sold-out.ts";
import { StockStore } from "./store.ts";
import { CatalogSync } from "./warm-up.ts";

export const SERVICE_NAME = "seckill-core";

/** How long start-up waits for Redis before giving up (the process then exits 1). */
const REDIS_START_TIMEOUT_MS = 15_000;

export function coreService(config: CoreConfig): ServiceSpec<CoreConfig> {
  const connections: Redis[] = [];
  let catalog: ActivityCatalog | undefined;
  let sync: CatalogSync | undefined;

  return {
    name: SERVICE_NAME,
    config,
    async setup(ctx) {
      const redis = createRedis(config.REDIS_URL, ctx.log, {
        commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
      });
      connections.push(redis);
      await waitForRedis(redis, config.REDIS_URL, REDIS_START_TIMEOUT_MS);
      // A subscribed connection only waits for messages: no timeout, retry forever.
      const subscriber = createRedis(config.REDIS_URL, ctx.log, { maxRetriesPerRequest: null });
      connections.push(subscriber);

      const store = new StockStore(redis);
      const soldOut = new SoldOutFlags(config.SOLD_OUT_CACHE_MS);
      await listenForRestock(subscriber, soldOut, ctx.log);

      catalog = new ActivityCatalog(ctx.etcd, ctx.log);
      sync = new CatalogSync({ catalog, store, log: ctx.log });
      sync.start();
      // Serving does not wait for etcd: the definitions that matter are already in Redis.
      void catalog.start();

      return coreRoutes({ store, soldOut, maxBatch: config.MAX_BATCH, log: ctx.log });
    },
    async close() {
      await sync?.close();
      await catalog?.close();
      await Promise.all(connections.map(closeRedis));
    },
  };
}
