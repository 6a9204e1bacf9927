/**
 * Verified access tokens, remembered for a short while. A buyer sends the
 * same token with every call of a sale (GetBuyToken, Buy, WatchOrder, Pay …)
 * and an Ed25519 verification costs ~0.3 ms of the edge's CPU (measured in
 * the e2e burst), more than the rest of a forwarded call. Keyed by the whole
 * token string, so only the exact bytes that verified hit the cache; an
 * entry lives until the token expires or `maxAgeMs`, whichever is first, so
 * a key removed from auth's JWKS stops being honoured within `maxAgeMs`.
 * Refusals are not cached.
 */
import type { VerifiedAccess } from "../../auth/src/client.ts";
import { counter, once } from "../../shared/src/runtime/metrics.ts";

const lookups = once("seckill_gateway_token_cache_total", () =>
  counter("seckill_gateway_token_cache_total", "Access token checks, by cache outcome.", [
    "outcome",
  ]),
);

export interface TokenVerifier {
  verify(token: string): Promise<VerifiedAccess>;
}

export interface TokenCacheOptions {
  /** 0 turns the cache off. */
  maxEntries: number;
  maxAgeMs: number;
  now?: () => number;
}

export function cachingVerifier(inner: TokenVerifier, opts: TokenCacheOptions): TokenVerifier {
  if (opts.maxEntries <= 0 || opts.maxAgeMs <= 0) return inner;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { access: VerifiedAccess; until: number }>();
  return {
    async verify(token) {
      const hit = cache.get(token);
      const t = now();
      if (hit && t < hit.until) {
        lookups.inc({ outcome: "hit" });
        return hit.access;
      }
      if (hit) cache.delete(token);
      lookups.inc({ outcome: "miss" });
      const access = await inner.verify(token);
      const until = Math.min(access.expiresAt.getTime(), t + opts.maxAgeMs);
      cache.set(token, { access, until });
      // Oldest first: a Map iterates in insertion order.
      while (cache.size > opts.maxEntries) cache.delete(cache.keys().next().value as string);
      return access;
    },
  };
}
