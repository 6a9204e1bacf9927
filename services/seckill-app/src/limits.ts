/**
 * What seckill-app keeps in Redis, shared by every instance: per-user rate
 * limits and the single-use claims of buy tokens.
 *
 * Keys (the data-plane contract, shared data-plane/keys.ts and docs/data-plane.md):
 * the token's claim, the Buy rate and the GetBuyToken rate of a user, all in the
 * activity's hash tag, so one script touches one slot and runs unchanged on
 * Redis Cluster; none of them is one of core's keys.
 *
 * Limits are fixed windows that open at a user's first attempt (INCR, PEXPIRE on
 * the first): O(1), one key per (user, activity), at most 2x the limit across a
 * window boundary, which is fine for a limit meant to stop scripted hammering.
 * Per activity rather than global per user because it keeps the rate key in the
 * same slot as the token claim: Buy costs ONE round trip for both.
 */
import type { Redis } from "ioredis";
import { buyRateKey, buyTokenClaimKey, buyTokenRateKey } from "../../shared/src/data-plane/keys.ts";

/**
 * A fixed window on KEYS[1] (ARGV[1] limit, ARGV[2] window ms): counts one attempt and
 * returns {0, ms until the window ends} when over the limit; otherwise falls through with `n`.
 */
const FIXED_WINDOW = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {0, ttl}
end
`;

/** Counts one attempt; {0, ms until the window ends} when over the limit, else {1, count}. */
const RATE = `${FIXED_WINDOW}return {1, n}
`;

/**
 * Buy: the rate limit, then the token claim, in one script.
 * KEYS: 1 rate key, 2 claim key
 * ARGV: 1 limit, 2 window ms, 3 request id, 4 claim ttl ms, 5 may claim ("1" | "0")
 * Returns {code, retry_after_ms}:
 *   0 rate limited (nothing claimed); 1 claimed by this request now;
 *   2 already claimed by this same request id (a retry: allowed);
 *   3 claimed by another request id (reuse: refused); 4 not claimed and may claim = "0".
 */
const BUY = `${FIXED_WINDOW}if ARGV[5] == '1' then
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {1, 0} end
end
local owner = redis.call('GET', KEYS[2])
if not owner then return {4, 0} end
if owner == ARGV[3] then return {2, 0} end
return {3, 0}
`;

interface LimitCommands {
  seckillAppRate(key: string, limit: number, windowMs: number): Promise<[number, number]>;
  seckillAppBuy(
    rateKey: string,
    claimKey: string,
    limit: number,
    windowMs: number,
    requestId: string,
    claimTtlMs: number,
    mayClaim: string,
  ): Promise<[number, number]>;
}

export interface RateLimit {
  limit: number;
  windowMs: number;
}

export type BuyGate =
  | { kind: "rate_limited"; retryAfterMs: number }
  | { kind: "claimed" }
  | { kind: "retry" }
  | { kind: "reused" }
  | { kind: "unclaimed" };

const gateKinds = ["rate_limited", "claimed", "retry", "reused", "unclaimed"] as const;

export class SaleLimits {
  private readonly redis: Redis & LimitCommands;

  constructor(
    redis: Redis,
    private readonly buy: RateLimit,
    private readonly token: RateLimit,
  ) {
    if (!("seckillAppBuy" in redis)) {
      redis.defineCommand("seckillAppRate", { numberOfKeys: 1, lua: RATE });
      redis.defineCommand("seckillAppBuy", { numberOfKeys: 2, lua: BUY });
    }
    this.redis = redis as Redis & LimitCommands;
  }

  /**
   * Counts a Buy attempt of (user, activity), then claims the token for
   * `requestId` (or, with `mayClaim` false, only reads who holds it).
   * A rate-limited attempt claims nothing: the same token works after the wait.
   */
  async admitBuy(
    activityId: string,
    userId: string,
    nonce: string,
    requestId: string,
    claimTtlMs: number,
    mayClaim: boolean,
  ): Promise<BuyGate> {
    const [code, ms] = await this.redis.seckillAppBuy(
      buyRateKey(activityId, userId),
      buyTokenClaimKey(activityId, nonce),
      this.buy.limit,
      this.buy.windowMs,
      requestId,
      Math.max(1, Math.ceil(claimTtlMs)),
      mayClaim ? "1" : "0",
    );
    const kind = gateKinds[code] ?? "reused";
    return kind === "rate_limited" ? { kind, retryAfterMs: Math.max(1, ms) } : { kind };
  }

  /** Who claimed the token: the request id, or null. A plain GET, counted nowhere. */
  claimOwner(activityId: string, nonce: string): Promise<string | null> {
    return this.redis.get(buyTokenClaimKey(activityId, nonce));
  }

  /** Counts a GetBuyToken call; the wait in ms when over the limit, else 0. */
  async admitToken(activityId: string, userId: string): Promise<number> {
    const [allowed, ms] = await this.redis.seckillAppRate(
      buyTokenRateKey(activityId, userId),
      this.token.limit,
      this.token.windowMs,
    );
    return allowed === 1 ? 0 : Math.max(1, ms);
  }
}
