/**
 * admin as a ServiceSpec: main.ts runs it as a process, tests start it
 * in-process with startService. Opens MySQL (and migrates), Redis (the
 * blacklist mirror; core's Redis read-only, the same connection unless
 * CORE_REDIS_URL differs), reaches core through the mesh, writes etcd, and
 * runs the self-heal loop.
 */
import type { Kysely } from "kysely";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { createDb, migrate, waitForMysql } from "../../shared/src/stores/mysql.ts";
import { closeRedis, createRedis, waitForRedis } from "../../shared/src/stores/redis.ts";
import { Blacklist } from "./blacklist.ts";
import { Catalog } from "./catalog.ts";
import type { AdminConfig } from "./config.ts";
import { adminMigrations } from "./migrations/index.ts";
import { OrdersReport } from "./orders-report.ts";
import { Propagator } from "./publisher.ts";
import { Reconciler } from "./reconcile.ts";
import { adminRoutes } from "./routes.ts";
import type { AdminDatabase } from "./schema.ts";
import { SelfHeal } from "./self-heal.ts";
import { RateSampler } from "./stats.ts";
import { CatalogStore } from "./store.ts";

export const SERVICE_NAME = "admin";

/** What tests reach into (the self-heal loop, to run a pass on demand). */
export interface AdminInternals {
  selfHeal: SelfHeal;
}

export function adminService(
  config: AdminConfig,
  onReady?: (internals: AdminInternals) => void,
): ServiceSpec<AdminConfig> {
  return {
    name: SERVICE_NAME,
    config,
    async setup(ctx) {
      const { log, cleanup } = ctx;
      const db = createDb<AdminDatabase>(config.MYSQL_URI);
      cleanup.add(() => db.destroy());
      await waitForMysql(db, log);
      await migrate(db as unknown as Kysely<unknown>, SERVICE_NAME, adminMigrations, log);
      const redis = createRedis(config.REDIS_URL, log);
      cleanup.add(() => closeRedis(redis));
      await waitForRedis(redis, config.REDIS_URL);
      let coreRedis = redis;
      if (config.CORE_REDIS_URL && config.CORE_REDIS_URL !== config.REDIS_URL) {
        const other = createRedis(config.CORE_REDIS_URL, log);
        cleanup.add(() => closeRedis(other));
        await waitForRedis(other, config.CORE_REDIS_URL);
        coreRedis = other;
      }

      const store = new CatalogStore(db);
      const core = ctx.mesh.client(SeckillCoreService, "seckill-core");
      const propagator = new Propagator({
        core,
        etcd: ctx.etcd,
        log,
        markWarmed: (id, at) => store.markWarmed(id, at),
      });
      const catalog = new Catalog({
        store,
        propagator,
        core,
        log,
        paymentTimeout: {
          min: config.MIN_PAYMENT_TIMEOUT_SECONDS,
          max: config.MAX_PAYMENT_TIMEOUT_SECONDS,
          fallback: config.DEFAULT_PAYMENT_TIMEOUT_SECONDS,
        },
      });
      const blacklist = new Blacklist({ db, redis, log });
      const orders = new OrdersReport(db, log);
      const reconciler = new Reconciler({
        store,
        orders,
        coreRedis,
        etcd: ctx.etcd,
        log,
        graceMs: config.RECONCILE_GRACE_SECONDS * 1000,
      });
      const rates = new RateSampler(coreRedis, log);
      rates.start();
      cleanup.add(() => rates.stop());

      const selfHeal = new SelfHeal({
        store,
        propagator,
        blacklist,
        etcd: ctx.etcd,
        log,
        intervalMs: config.SELF_HEAL_INTERVAL_MS,
      });
      // Not awaited: core may still be starting; the loop retries every interval.
      selfHeal.start(ctx.shutdownSignal);
      cleanup.add(() => selfHeal.stop());
      onReady?.({ selfHeal });

      return adminRoutes({
        catalog,
        blacklist,
        reconciler,
        stats: { store, orders, core, rates },
        log,
      });
    },
  };
}
