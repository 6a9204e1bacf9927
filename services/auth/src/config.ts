import { z } from "zod";
import {
  baseConfigSchema,
  ConfigError,
  flag,
  int,
  loadConfig,
} from "../../shared/src/runtime/config.ts";
import { parsePrivateKeys } from "./keys.ts";
import { PASSWORD_MAX, PASSWORD_MIN } from "./passwords.ts";

/** The auth service's settings: the base ones plus these (all from env). */
export const authConfigSchema = baseConfigSchema
  .extend({
    /** "production" forbids AUTH_DEV_KEYS. */
    NODE_ENV: z.string().default("development"),
    /** mysql://user:pass@host:port/db (users and refresh tokens live here). */
    MYSQL_URI: z.string().min(1),
    /** redis://host:port (login rate limits, shared by all instances). */
    REDIS_URL: z.string().min(1),

    /** Ed25519 private keys (PEM or JSON, see keys.ts); the first signs, all are published. */
    JWT_PRIVATE_KEYS: z.string().optional(),
    /** Without JWT_PRIVATE_KEYS, generate an ephemeral key at start (dev only, one instance). */
    AUTH_DEV_KEYS: flag(),
    JWT_ISSUER: z.string().min(1).default("seckill-auth"),
    JWT_AUDIENCE: z.string().min(1).default("seckill"),
    ACCESS_TOKEN_TTL_SECONDS: int(30, 24 * 3600, 15 * 60),
    REFRESH_TOKEN_TTL_SECONDS: int(300, 90 * 24 * 3600, 7 * 24 * 3600),

    /** log2 of scrypt's N for new hashes (15 = 32 MiB, ~90 ms here); raise it any time. */
    PASSWORD_SCRYPT_LOG_N: int(14, 20, 15),
    /** Password hashes in flight above which logins get RESOURCE_EXHAUSTED. */
    PASSWORD_HASH_MAX_PENDING: int(1, 10_000, 64),

    /** Failed logins per username per window before RESOURCE_EXHAUSTED. */
    LOGIN_MAX_FAILURES_PER_USER: int(1, 1_000_000, 10),
    /** Failed logins per client IP per window (a NAT hides many users: higher). */
    LOGIN_MAX_FAILURES_PER_IP: int(1, 1_000_000, 100),
    LOGIN_FAILURE_WINDOW_SECONDS: int(1, 24 * 3600, 300),

    /** Bootstrap admin, created at start when missing (both or neither). */
    ADMIN_USERNAME: z.string().optional(),
    ADMIN_PASSWORD: z.string().optional(),

    /** Enables ProvisionUsers (load tests only; never in production). */
    ALLOW_PROVISIONING: flag(),
    /** Users per ProvisionUsers call; bounds the response (~0.5 KB per user with tokens). */
    PROVISION_MAX_PER_CALL: int(1, 50_000, 5_000),
  })
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string) =>
      ctx.addIssue({ code: "custom", path: [path], message });
    if (c.JWT_PRIVATE_KEYS?.trim()) {
      try {
        parsePrivateKeys(c.JWT_PRIVATE_KEYS);
      } catch (err) {
        issue("JWT_PRIVATE_KEYS", `unusable signing keys: ${(err as Error).message}`);
      }
    } else if (!c.AUTH_DEV_KEYS) {
      issue(
        "JWT_PRIVATE_KEYS",
        "required: Ed25519 private key(s) as PEM or JSON (or AUTH_DEV_KEYS=true for a throw-away dev key)",
      );
    }
    if (c.AUTH_DEV_KEYS && c.NODE_ENV === "production") {
      issue("AUTH_DEV_KEYS", "ephemeral dev keys are refused when NODE_ENV=production");
    }
    if (!!c.ADMIN_USERNAME !== !!c.ADMIN_PASSWORD) {
      issue(
        c.ADMIN_USERNAME ? "ADMIN_PASSWORD" : "ADMIN_USERNAME",
        "set ADMIN_USERNAME and ADMIN_PASSWORD together",
      );
    }
    if (c.ADMIN_PASSWORD !== undefined && c.ADMIN_PASSWORD !== "") {
      const length = [...c.ADMIN_PASSWORD].length;
      if (length < PASSWORD_MIN || length > PASSWORD_MAX) {
        issue("ADMIN_PASSWORD", `must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters long`);
      }
    }
  });

export type AuthConfig = z.infer<typeof authConfigSchema>;

/** Env variables whose values must never appear in an error message or a log. */
const SECRET_VARIABLES = ["JWT_PRIVATE_KEYS", "ADMIN_PASSWORD", "MYSQL_URI", "REDIS_URL"] as const;

/**
 * loadConfig, except that the values of secret variables are blanked out of the
 * error (loadConfig quotes the offending value, fine for a port, not for a key).
 */
export function loadAuthConfig(env: Record<string, string | undefined> = process.env): AuthConfig {
  try {
    return loadConfig(authConfigSchema, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    let message = err.message;
    for (const name of SECRET_VARIABLES) {
      const value = env[name];
      if (value) message = message.split(JSON.stringify(value)).join('"[redacted]"');
    }
    throw new ConfigError(message);
  }
}
