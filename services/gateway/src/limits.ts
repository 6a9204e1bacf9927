/**
 * Token buckets at the edge, in memory per instance: one for the whole
 * instance, one per client IP, optionally one per user. A refused call learns
 * how long to wait before one token is back.
 */
import { trackedIps } from "./metrics.ts";

export interface Take {
  ok: boolean;
  /** When refused: milliseconds until a token is available. */
  retryAfterMs: number;
}

const OK: Take = { ok: true, retryAfterMs: 0 };

/** A classic token bucket: `burst` tokens at most, `ratePerSecond` tokens back per second. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  take(now: number, cost = 1): Take {
    this.refill(now);
    if (this.tokens >= cost) {
      this.tokens -= cost;
      return OK;
    }
    return {
      ok: false,
      retryAfterMs: Math.max(1, Math.ceil(((cost - this.tokens) * 1000) / this.ratePerSecond)),
    };
  }

  /** True when the bucket is full again: forgetting it changes nothing. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(
        this.burst,
        this.tokens + ((now - this.last) * this.ratePerSecond) / 1000,
      );
      this.last = now;
    }
  }
}

/**
 * One bucket per key (IP, user), created on first use. The map is bounded:
 * past `maxKeys`, full buckets (equivalent to no bucket) are swept; if every
 * bucket is busy the oldest are dropped, which can only make the limit laxer
 * for those keys, never refuse anyone wrongly.
 */
export class KeyedBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    readonly kind: string,
    readonly ratePerSecond: number,
    readonly burst: number,
    readonly maxKeys: number,
  ) {}

  take(key: string, now: number): Take {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.maxKeys) this.sweep(now);
      bucket = new TokenBucket(this.ratePerSecond, this.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket.take(now);
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Drops full buckets; if that frees less than a tenth, drops the oldest keys too. */
  sweep(now: number): void {
    for (const [key, bucket] of this.buckets) if (bucket.isFull(now)) this.buckets.delete(key);
    const target = Math.floor(this.maxKeys * 0.9);
    if (this.buckets.size > target) {
      let excess = this.buckets.size - target;
      for (const key of this.buckets.keys()) {
        if (excess-- <= 0) break;
        this.buckets.delete(key);
      }
    }
    trackedIps.set({ kind: this.kind }, this.buckets.size);
  }
}

export interface LimitSettings {
  ip: { ratePerSecond: number; burst: number; maxKeys: number };
  global: { ratePerSecond: number; burst: number };
  user: { ratePerSecond: number; burst: number; maxKeys: number };
}

export type LimitKind = "ip" | "global" | "user";

export interface Refusal {
  kind: LimitKind;
  retryAfterMs: number;
}

/** The edge's limits; a rate of 0 turns a limit off. */
export class EdgeLimiter {
  private readonly ip: KeyedBuckets | undefined;
  private readonly global: TokenBucket | undefined;
  private readonly user: KeyedBuckets | undefined;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    settings: LimitSettings,
    private readonly now: () => number = Date.now,
  ) {
    const t = now();
    const { ip, global, user } = settings;
    this.ip =
      ip.ratePerSecond > 0
        ? new KeyedBuckets("ip", ip.ratePerSecond, ip.burst, ip.maxKeys)
        : undefined;
    this.global =
      global.ratePerSecond > 0 ? new TokenBucket(global.ratePerSecond, global.burst, t) : undefined;
    this.user =
      user.ratePerSecond > 0
        ? new KeyedBuckets("user", user.ratePerSecond, user.burst, user.maxKeys)
        : undefined;
    // Idle buckets refill; dropping them keeps memory proportional to active clients.
    this.sweeper = setInterval(() => {
      const at = this.now();
      this.ip?.sweep(at);
      this.user?.sweep(at);
    }, 10_000);
    this.sweeper.unref();
  }

  /**
   * Per-IP first, then the instance's: a flood from one address is refused by
   * its own bucket without draining everyone else's share.
   */
  admitClient(ip: string): Refusal | undefined {
    const now = this.now();
    if (this.ip) {
      const r = this.ip.take(ip, now);
      if (!r.ok) return { kind: "ip", retryAfterMs: r.retryAfterMs };
    }
    if (this.global) {
      const r = this.global.take(now);
      if (!r.ok) return { kind: "global", retryAfterMs: r.retryAfterMs };
    }
    return undefined;
  }

  admitUser(userId: string): Refusal | undefined {
    if (!this.user) return undefined;
    const r = this.user.take(userId, this.now());
    return r.ok ? undefined : { kind: "user", retryAfterMs: r.retryAfterMs };
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
