/**
 * The gateway as an EdgeServiceSpec: Redis (blacklist copy, restock
 * messages), the JWT verifier over auth's public keys, the limits and the
 * sold-out flags, wired once. main.ts runs it; tests start it in process.
 */

import { createJwtVerifier } from "../../auth/src/client.ts";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import { BlacklistCache } from "../../shared/src/sale/blacklist.ts";
import { listenForRestock, SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { closeRedis, createRedis, waitForRedis } from "../../shared/src/stores/redis.ts";
import type { GatewayConfig } from "./config.ts";
import type { EdgeServiceSpec } from "./edge-server.ts";
import { EdgeLimiter } from "./limits.ts";
import { jwksFetchErrors, soldOutMetrics } from "./metrics.ts";
import { RETRY_AFTER_MS_HEADER } from "./policy.ts";
import { gatewayRoutes, UPSTREAMS } from "./routes.ts";
import { RecentKeys } from "./sold-out.ts";
import { loadStaticSite } from "./static.ts";
import { cachingVerifier } from "./token-cache.ts";

/** Retries of a Buy this instance forwarded are recognised for this long. */
const RECENT_REQUESTS_TTL_MS = 5 * 60_000;
const RECENT_REQUESTS_MAX = 200_000;

export function gatewaySpec(config: GatewayConfig): EdgeServiceSpec<GatewayConfig> {
  return {
    name: "gateway",
    config,
    async setup(ctx) {
      const { log, cleanup } = ctx;
      const redis = createRedis(config.REDIS_URL, log, { connectionName: "gateway" });
      cleanup.add(() => closeRedis(redis));
      await waitForRedis(redis, config.REDIS_URL);
      const blacklistSubscriber = createRedis(config.REDIS_URL, log, {
        connectionName: "gateway-blacklist",
      });
      cleanup.add(() => closeRedis(blacklistSubscriber));
      const restockSubscriber = createRedis(config.REDIS_URL, log, {
        connectionName: "gateway-restock",
      });
      cleanup.add(() => closeRedis(restockSubscriber));

      const blacklist = new BlacklistCache(redis, blacklistSubscriber, log);
      cleanup.add(() => blacklist.stop());
      await blacklist.start();

      const flags = new SoldOutFlags(config.SOLD_OUT_TTL_MS, Date.now, soldOutMetrics);
      await listenForRestock(restockSubscriber, flags, log);

      const auth = ctx.mesh.client(AuthService, UPSTREAMS.auth);
      const verifier = createJwtVerifier({
        fetchKeys: async () => (await auth.getPublicKeys({}, { timeoutMs: 3000 })).keys,
        issuer: config.JWT_ISSUER,
        audience: config.JWT_AUDIENCE,
        cacheMs: config.JWKS_CACHE_MS,
        minRefetchMs: config.JWKS_MIN_REFETCH_MS,
        onFetchError: (err) => {
          jwksFetchErrors.inc();
          log.warn({ err: String(err) }, "fetching auth's public keys failed");
        },
      });
      // Warm the key cache without making start-up depend on auth (pods start in any order).
      void verifier.refreshKeys().then(
        () => log.info({ kids: verifier.kids }, "public keys loaded"),
        () => {},
      );

      const limiter = new EdgeLimiter({
        ip: {
          ratePerSecond: config.RATE_LIMIT_IP_RPS,
          burst: config.RATE_LIMIT_IP_BURST,
          maxKeys: config.RATE_LIMIT_IP_MAX_TRACKED,
        },
        global: {
          ratePerSecond: config.RATE_LIMIT_GLOBAL_RPS,
          burst: config.RATE_LIMIT_GLOBAL_BURST,
        },
        user: {
          ratePerSecond: config.RATE_LIMIT_USER_RPS,
          burst: config.RATE_LIMIT_USER_BURST,
          maxKeys: config.RATE_LIMIT_IP_MAX_TRACKED,
        },
      });
      cleanup.add(() => limiter.close());

      log.info(
        {
          ipRps: config.RATE_LIMIT_IP_RPS,
          globalRps: config.RATE_LIMIT_GLOBAL_RPS,
          userRps: config.RATE_LIMIT_USER_RPS,
          trustedProxyHops: config.TRUSTED_PROXY_HOPS,
          corsOrigins: config.CORS_ALLOWED_ORIGINS ?? [],
        },
        "edge policy",
      );

      const site = config.WEB_ROOT ? loadStaticSite(config.WEB_ROOT) : undefined;
      if (config.WEB_ROOT && !site)
        log.warn({ webRoot: config.WEB_ROOT }, "WEB_ROOT missing: no pages");
      if (site) log.info({ webRoot: config.WEB_ROOT, files: site.paths.length }, "serving pages");

      return {
        web: site?.handler,
        routes: gatewayRoutes({
          transport: (upstream) => ctx.mesh.transport(upstream),
          gate: {
            verifier: cachingVerifier(verifier, {
              maxEntries: config.TOKEN_CACHE_ENTRIES,
              maxAgeMs: config.TOKEN_CACHE_MAX_AGE_MS,
            }),
            limiter,
            blacklist,
            trustedProxyHops: config.TRUSTED_PROXY_HOPS,
          },
          unaryTimeoutMs: config.UPSTREAM_TIMEOUT_MS,
          streamTimeoutMs: config.STREAM_TIMEOUT_MS,
          streamShutdownSignal: ctx.streamShutdownSignal,
          flags,
          recent: new RecentKeys(RECENT_REQUESTS_MAX, RECENT_REQUESTS_TTL_MS),
          instanceId: config.INSTANCE_ID,
          version: config.VERSION,
        }),
        cors: {
          allowedOrigins: config.CORS_ALLOWED_ORIGINS ?? [],
          maxAgeSeconds: config.CORS_MAX_AGE_SECONDS,
          extraAllowedHeaders: ["Authorization", "X-Request-Id"],
          extraExposedHeaders: [RETRY_AFTER_MS_HEADER],
        },
      };
    },
  };
}
