/**
 * Login attempt limits in Redis, shared by every auth instance: per username
 * and per client IP, fixed windows that start at the first failure.
 *
 * An attempt is counted BEFORE the password is checked (one atomic script per
 * key), so N parallel guesses cannot all slip past a limit of 10; a success
 * then clears the username's counter and gives the IP its slot back, and an
 * attempt that ended in an internal error is given back too. Blocked attempts
 * cost no scrypt work. Each key is handled by its own single-key script, so
 * this runs unchanged on Redis Cluster.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { LOGIN_RATE_PREFIX, loginIpKey, loginUserKey } from "../../shared/src/data-plane/keys.ts";
import type { Redis } from "../../shared/src/stores/redis.ts";

// KEYS[1] counter; ARGV[1] limit, ARGV[2] window ms.
// Returns {1, count} when counted, {0, ms until the window ends} when blocked.
const ACQUIRE = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {0, ttl}
end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, n}
`;

// KEYS[1] counter: gives one attempt back.
const RELEASE = `
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
`;

interface LimiterCommands {
  authLoginAcquire(key: string, limit: number, windowMs: number): Promise<[number, number]>;
  authLoginRelease(key: string): Promise<number>;
}

export interface LoginLimits {
  maxPerUser: number;
  maxPerIp: number;
  windowMs: number;
  /** Key prefix; default LOGIN_RATE_PREFIX ("auth:login", data-plane keys.ts). */
  prefix?: string;
}

/** One counted attempt: tell it how the password check ended. */
export interface LoginAttempt {
  /** Clears the username's failures and gives the IP its slot back. */
  succeeded(): Promise<void>;
  /** The check did not happen (internal error): the attempt does not count. */
  abandoned(): Promise<void>;
}

export class LoginLimiter {
  private readonly redis: Redis & LimiterCommands;
  private readonly prefix: string;

  constructor(
    redis: Redis,
    private readonly limits: LoginLimits,
  ) {
    if (!("authLoginAcquire" in redis)) {
      redis.defineCommand("authLoginAcquire", { numberOfKeys: 1, lua: ACQUIRE });
      redis.defineCommand("authLoginRelease", { numberOfKeys: 1, lua: RELEASE });
    }
    this.redis = redis as Redis & LimiterCommands;
    this.prefix = limits.prefix ?? LOGIN_RATE_PREFIX;
  }

  userKey = (username: string) => loginUserKey(username, this.prefix);
  ipKey = (ip: string) => loginIpKey(ip, this.prefix);

  /**
   * Counts one attempt for the username (and the IP when known), or throws
   * RESOURCE_EXHAUSTED with a retry-after (seconds) when either is over its limit.
   */
  async acquire(username: string, ip: string | undefined): Promise<LoginAttempt> {
    const { maxPerUser, maxPerIp, windowMs } = this.limits;
    const userKey = this.userKey(username);
    const ipKey = ip ? this.ipKey(ip) : undefined;
    let user: [number, number];
    let byIp: [number, number] | undefined;
    try {
      [user, byIp] = await Promise.all([
        this.redis.authLoginAcquire(userKey, maxPerUser, windowMs),
        ipKey ? this.redis.authLoginAcquire(ipKey, maxPerIp, windowMs) : undefined,
      ]);
    } catch (err) {
      // Fail closed: without the counters there is no limit on password guessing.
      throw new ConnectError(
        "login is unavailable for a moment (attempt limiter unreachable); retry shortly",
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    }
    const userBlocked = user[0] === 0;
    const ipBlocked = byIp?.[0] === 0;
    if (userBlocked || ipBlocked) {
      const blockedMs = Math.max(userBlocked ? user[1] : 0, ipBlocked ? byIp![1] : 0);
      // Give back what this attempt counted on the key that was not blocked.
      await Promise.all([
        !userBlocked ? this.redis.authLoginRelease(userKey) : undefined,
        ipKey && !ipBlocked ? this.redis.authLoginRelease(ipKey) : undefined,
      ]);
      const retryAfter = Math.max(1, Math.ceil(blockedMs / 1000));
      const what = userBlocked ? "this username" : "this address";
      throw new ConnectError(
        `too many failed login attempts for ${what}; retry in ${retryAfter} s`,
        Code.ResourceExhausted,
        { "retry-after": String(retryAfter) },
      );
    }
    return {
      succeeded: async () => {
        await Promise.all([
          this.redis.del(userKey),
          ipKey ? this.redis.authLoginRelease(ipKey) : undefined,
        ]);
      },
      abandoned: async () => {
        await Promise.all([
          this.redis.authLoginRelease(userKey),
          ipKey ? this.redis.authLoginRelease(ipKey) : undefined,
        ]);
      },
    };
  }
}
