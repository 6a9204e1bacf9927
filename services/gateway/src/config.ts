import { z } from "zod";
import {
  baseConfigSchema,
  csv,
  int,
  intAtLeast,
  millis,
  port,
} from "../../shared/src/runtime/config.ts";

/** Requests per second; 0 turns that limit off. */
const rate = z.coerce.number().min(0);

/** The gateway's settings: the base ones (PORT is the h2c port) plus these. */
export const gatewayConfigSchema = baseConfigSchema.extend({
  /** HTTP/1.1 listener for Connect and gRPC-Web clients that cannot speak h2c (browsers). */
  HTTP1_PORT: port.default(0),
  /** redis://host:port: the blacklist copy and core's restock messages (read only). */
  REDIS_URL: z.string().min(1),

  /** Browser origins allowed by CORS, comma-separated ("https://shop.example"); "*" allows any. */
  CORS_ALLOWED_ORIGINS: csv.optional(),
  /** How long browsers may cache a CORS preflight answer. */
  CORS_MAX_AGE_SECONDS: int(0, 86_400, 7200),
  /**
   * Proxies in front of the gateway that append to X-Forwarded-For (a cloud load
   * balancer: 1). 0 uses the TCP peer address and ignores the header, which a
   * client could forge.
   */
  TRUSTED_PROXY_HOPS: int(0, 10, 0),

  /** Expected "iss" and "aud" of access tokens (auth's JWT_ISSUER / JWT_AUDIENCE). */
  JWT_ISSUER: z.string().min(1).default("seckill-auth"),
  JWT_AUDIENCE: z.string().min(1).default("seckill"),
  /** Freshness of the cached public keys (stale keys keep working while auth is away). */
  JWKS_CACHE_MS: millis(10 * 60_000),
  /** Minimum time between two key fetches (an unknown kid refetches at most this often). */
  JWKS_MIN_REFETCH_MS: millis(5_000),
  /** Verified tokens remembered (each until its expiry, at most TOKEN_CACHE_MAX_AGE_MS); 0 = off. */
  TOKEN_CACHE_ENTRIES: intAtLeast(0, 50_000),
  TOKEN_CACHE_MAX_AGE_MS: millis(60_000),

  /** Token bucket of each client IP: refill per second and burst; 0 = off. */
  RATE_LIMIT_IP_RPS: rate.default(100),
  RATE_LIMIT_IP_BURST: intAtLeast(1, 200),
  /** Most client IPs tracked at once; idle full buckets are dropped first. */
  RATE_LIMIT_IP_MAX_TRACKED: intAtLeast(100, 200_000),
  /** Token bucket of this whole instance; 0 = off. */
  RATE_LIMIT_GLOBAL_RPS: rate.default(20_000),
  RATE_LIMIT_GLOBAL_BURST: intAtLeast(1, 40_000),
  /** Token bucket of each authenticated user at this instance; 0 = off (seckill-app limits buyers in Redis). */
  RATE_LIMIT_USER_RPS: rate.default(0),
  RATE_LIMIT_USER_BURST: intAtLeast(1, 20),

  /** Life of a local sold-out flag without a restock message; 0 turns the short-circuit off. */
  SOLD_OUT_TTL_MS: millis(1000),
  /** Upstream deadline of a unary call when the client sets none (or a longer one). */
  UPSTREAM_TIMEOUT_MS: millis(10_000, 1),
  /** Longest life of a forwarded server stream (WatchOrder) when the client sets no deadline. */
  STREAM_TIMEOUT_MS: millis(10 * 60_000, 1),
  /** Built web pages (`npm run build:web` → dist/web) served on both ports; unset or missing: none. */
  WEB_ROOT: z.string().min(1).optional(),
  /** Largest request message accepted from clients. */
  MAX_REQUEST_BYTES: intAtLeast(1024, 1024 * 1024),
});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
