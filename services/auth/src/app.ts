/** Wiring: stores, keys and the domain objects of one auth instance, as a ServiceSpec. */
import type { Kysely } from "kysely";
import { Cleanup } from "../../shared/src/runtime/cleanup.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { ServiceSpec } from "../../shared/src/runtime/server.ts";
import { createDb, migrate, waitForMysql } from "../../shared/src/stores/mysql.ts";
import { closeRedis, createRedis, waitForRedis } from "../../shared/src/stores/redis.ts";
import { Auth } from "./auth.ts";
import type { AuthConfig } from "./config.ts";
import { generateSigningKey, type KeyRing, keyRing, parsePrivateKeys } from "./keys.ts";
import { passwordHashSeconds } from "./metrics.ts";
import { authMigrations } from "./migrations/index.ts";
import { PasswordHasher } from "./passwords.ts";
import { LoginLimiter } from "./rate-limit.ts";
import { authRoutes } from "./routes.ts";
import type { AuthDatabase } from "./schema.ts";
import { SessionStore } from "./sessions.ts";
import { TokenIssuer } from "./tokens.ts";
import { UserStore } from "./users.ts";

const PURGE_EVERY_MS = 10 * 60_000;

export function loadKeyRing(config: AuthConfig, log: Logger): KeyRing {
  if (config.JWT_PRIVATE_KEYS?.trim()) {
    const ring = keyRing(parsePrivateKeys(config.JWT_PRIVATE_KEYS));
    log.info(
      { signingKid: ring.signing.kid, kids: ring.keys.map((k) => k.kid) },
      "signing keys loaded",
    );
    return ring;
  }
  // Config validation allows this only with AUTH_DEV_KEYS=true outside production.
  const { key } = generateSigningKey(`dev-${Date.now().toString(36)}`);
  log.warn(
    { signingKid: key.kid },
    "AUTH_DEV_KEYS: signing with an ephemeral key made at start; its tokens die with this process and other auth instances cannot verify them. Never in production: set JWT_PRIVATE_KEYS",
  );
  return keyRing([key]);
}

export interface OpenedAuth {
  auth: Auth;
  routes: ReturnType<typeof authRoutes>;
  close(): Promise<void>;
}

/** Opens MySQL (and migrates), Redis and the keys; makes the bootstrap admin. */
export async function openAuth(config: AuthConfig, log: Logger): Promise<OpenedAuth> {
  const ring = loadKeyRing(config, log);
  const cleanup = new Cleanup();
  const close = () => cleanup.run();
  const db = createDb<AuthDatabase>(config.MYSQL_URI);
  cleanup.add(() => db.destroy());
  const redis = createRedis(config.REDIS_URL, log);
  cleanup.add(() => closeRedis(redis));
  try {
    await waitForMysql(db, log);
    await migrate(db as unknown as Kysely<unknown>, "auth", authMigrations, log);
    await waitForRedis(redis, config.REDIS_URL);
    const users = new UserStore(db);
    const sessions = new SessionStore(db);
    const hasher = new PasswordHasher({
      params: { logN: config.PASSWORD_SCRYPT_LOG_N, r: 8, p: 1 },
      maxPending: config.PASSWORD_HASH_MAX_PENDING,
      observe: (op, seconds) => passwordHashSeconds.observe({ op }, seconds),
    });
    const issuer = new TokenIssuer(ring, {
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      accessTtlSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
      refreshTtlSeconds: config.REFRESH_TOKEN_TTL_SECONDS,
    });
    const limiter = new LoginLimiter(redis, {
      maxPerUser: config.LOGIN_MAX_FAILURES_PER_USER,
      maxPerIp: config.LOGIN_MAX_FAILURES_PER_IP,
      windowMs: config.LOGIN_FAILURE_WINDOW_SECONDS * 1000,
    });
    const auth = new Auth({ users, sessions, hasher, issuer, ring, limiter, log });
    if (config.ADMIN_USERNAME && config.ADMIN_PASSWORD) {
      await auth.bootstrapAdmin(config.ADMIN_USERNAME, config.ADMIN_PASSWORD);
    }
    if (config.ALLOW_PROVISIONING) {
      log.warn(
        { maxPerCall: config.PROVISION_MAX_PER_CALL },
        "ALLOW_PROVISIONING: ProvisionUsers is enabled (load tests only: provisioned users share one password hash per call)",
      );
    }
    const purgeTimer = setInterval(() => {
      sessions.purgeExpired().then(
        (n) => n > 0 && log.info({ deleted: n }, "expired refresh tokens purged"),
        (err) => log.warn({ err: (err as Error).message }, "refresh token purge failed"),
      );
    }, PURGE_EVERY_MS).unref();
    cleanup.add(() => clearInterval(purgeTimer));
    const routes = authRoutes({
      auth,
      log,
      provisioning: {
        enabled: config.ALLOW_PROVISIONING,
        users,
        hasher,
        issuer,
        maxPerCall: config.PROVISION_MAX_PER_CALL,
      },
    });
    return { auth, routes, close };
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
}

/** The auth service as startService / runService take it. */
export function authSpec(config: AuthConfig): ServiceSpec<AuthConfig> {
  return {
    name: "auth",
    config,
    async setup(ctx) {
      const opened = await openAuth(config, ctx.log);
      ctx.cleanup.add(() => opened.close());
      return opened.routes;
    },
  };
}
