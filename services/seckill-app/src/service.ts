/**
 * seckill-app as a ServiceSpec: main.ts runs it as a process, tests start it
 * in-process with startService. Opens two Redis connections (commands, and one
 * subscriber for the blacklist's and core's restock messages), the activity
 * catalog over etcd, and a batched Reserve client of seckill-core.
 */
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { createReserver } from "../../seckill-core/src/client.ts";
import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { sleep } from "../../shared/src/runtime/time.ts";
import { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import { BlacklistCache } from "../../shared/src/sale/blacklist.ts";
import { listenForRestock, SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { closeRedis, createRedis, waitForRedis } from "../../shared/src/stores/redis.ts";
import { ActivityView } from "./activity-view.ts";
import { AdmissionGate } from "./admission.ts";
import { BuyTokens } from "./buy-token.ts";
import type { AppConfig } from "./config.ts";
import { SaleLimits } from "./limits.ts";
import { soldOutMetrics } from "./metrics.ts";
import { RemainingStock } from "./remaining.ts";
import { appRoutes } from "./routes.ts";
import { Sale } from "./sale.ts";

export const SERVICE_NAME = "seckill-app";

export function appService(config: AppConfig): ServiceSpec<AppConfig> {
  return {
    name: SERVICE_NAME,
    config,
    async setup(ctx) {
      const { log, cleanup } = ctx;
      const tokens = new BuyTokens(config.BUY_TOKEN_SECRET, config.BUY_TOKEN_TTL_SECONDS);

      const redis = createRedis(config.REDIS_URL, log, {
        commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
        enableAutoPipelining: config.REDIS_AUTO_PIPELINING,
      });
      cleanup.add(() => closeRedis(redis));
      await waitForRedis(redis, config.REDIS_URL);
      // A subscribed connection only waits for messages: no timeout, retry forever.
      const subscriber = createRedis(config.REDIS_URL, log, { maxRetriesPerRequest: null });
      cleanup.add(() => closeRedis(subscriber));

      const flags = new SoldOutFlags(config.SOLD_OUT_TTL_MS, Date.now, soldOutMetrics);
      cleanup.add(await listenForRestock(subscriber, flags, log));
      const blacklist = new BlacklistCache(redis, subscriber, log);
      await blacklist.start();
      cleanup.add(() => blacklist.stop());

      const view = new ActivityView(flags, log);
      const catalog = new ActivityCatalog(ctx.etcd, log);
      catalog.subscribe((activities) => view.apply(activities));
      cleanup.add(() => catalog.close());
      // Without a first snapshot every activity would look unknown: refuse to serve instead.
      const timeout = new AbortController();
      const loaded = await Promise.race([
        catalog.start().then(() => true),
        sleep(config.CATALOG_START_TIMEOUT_MS, timeout.signal).then(() => false),
      ]);
      timeout.abort();
      if (!loaded)
        throw new Error(
          `activities could not be read from etcd within ${config.CATALOG_START_TIMEOUT_MS} ms`,
        );
      log.info({ activities: view.size }, "activity snapshot loaded");

      const gate = (name: string) => {
        const g = new AdmissionGate({
          name,
          maxInflight: config.MAX_INFLIGHT,
          maxQueue: config.ADMISSION_QUEUE,
          maxWaitMs: config.ADMISSION_WAIT_MS,
        });
        cleanup.add(() => g.close());
        return g;
      };
      const core = ctx.mesh.client(SeckillCoreService, "seckill-core");
      const sale = new Sale({
        view,
        flags,
        blacklist,
        tokens,
        limits: new SaleLimits(
          redis,
          { limit: config.USER_RATE_LIMIT, windowMs: config.USER_RATE_WINDOW_MS },
          { limit: config.TOKEN_RATE_LIMIT, windowMs: config.TOKEN_RATE_WINDOW_MS },
        ),
        buyGate: gate("buy"),
        tokenGate: gate("token"),
        reserve: createReserver(core, {
          maxBatch: config.RESERVE_MAX_BATCH,
          maxDelayMs: config.RESERVE_MAX_DELAY_MS,
        }),
        retryGraceMs: config.BUY_TOKEN_RETRY_GRACE_SECONDS * 1000,
        overloadRetryAfterMs: config.OVERLOAD_RETRY_AFTER_MS,
        log,
      });
      // Discover core now rather than on the first Buy.
      void ctx.mesh.ready("seckill-core");
      const remaining = new RemainingStock(
        async (activityId) => (await core.getStock({ activityId }, { timeoutMs: 300 })).remaining,
      );
      return appRoutes({ view, flags, sale, remaining });
    },
  };
}
