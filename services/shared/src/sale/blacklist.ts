import type { Redis } from "ioredis";
import { BLACKLIST_CHANNEL, type BlacklistKind, blacklistKey } from "../data-plane/keys.ts";
import type { Logger } from "../runtime/log.ts";
import { gauge, once } from "../runtime/metrics.ts";

/**
 * The blacklist every instance enforces. Admin keeps the record in MySQL and
 * mirrors it here: one Redis hash per kind (member → JSON {reason, expiresAtMs})
 * and a pub/sub message on every change. Readers hold an in-memory copy,
 * reloaded on each message and at least every `refreshMs`, so a change is
 * effective everywhere within a second and a check costs no round trip.
 * The hash and channel names are the data-plane contract's (data-plane/keys.ts).
 */
export type { BlacklistKind };

export interface BlacklistEntry {
  reason: string;
  /** 0 = never expires. */
  expiresAtMs: number;
}

/** Writes an entry (admin's side) and tells every reader. */
export async function putBlacklistEntry(
  redis: Redis,
  kind: BlacklistKind,
  member: string,
  entry: BlacklistEntry,
) {
  await redis.hset(blacklistKey(kind), member, JSON.stringify(entry));
  await redis.publish(BLACKLIST_CHANNEL, `${kind}:${member}`);
}

export async function removeBlacklistEntry(redis: Redis, kind: BlacklistKind, member: string) {
  await redis.hdel(blacklistKey(kind), member);
  await redis.publish(BLACKLIST_CHANNEL, `${kind}:${member}`);
}

const blacklistSize = once("seckill_blacklist_entries", () =>
  gauge("seckill_blacklist_entries", "Blacklist entries in this instance's copy.", ["kind"]),
);

export class BlacklistCache {
  private entries: Record<BlacklistKind, Map<string, BlacklistEntry>> = {
    user: new Map(),
    ip: new Map(),
  };
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;

  /**
   * @param redis for reads
   * @param subscriber a dedicated connection (it enters subscriber mode)
   */
  constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly log: Logger,
    private readonly refreshMs = 1000,
  ) {}

  async start(): Promise<void> {
    this.subscriber.on("message", (channel) => {
      if (channel === BLACKLIST_CHANNEL) void this.reload();
    });
    await this.subscriber.subscribe(BLACKLIST_CHANNEL);
    await this.reload();
    this.timer = setInterval(() => void this.reload(), this.refreshMs);
    this.timer.unref();
  }

  isBlocked(kind: BlacklistKind, member: string | undefined, nowMs = Date.now()): boolean {
    if (!member) return false;
    const entry = this.entries[kind].get(member);
    return entry !== undefined && (entry.expiresAtMs === 0 || entry.expiresAtMs > nowMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.subscriber.unsubscribe(BLACKLIST_CHANNEL).catch(() => {});
  }

  /** Reads both hashes; on failure keeps the last copy (a Redis blip must not unblock anyone). */
  reload(): Promise<void> {
    this.reloading ??= (async () => {
      try {
        const [users, ips] = await Promise.all([
          this.redis.hgetall(blacklistKey("user")),
          this.redis.hgetall(blacklistKey("ip")),
        ]);
        this.entries = { user: parse(users, this.log), ip: parse(ips, this.log) };
        blacklistSize.set({ kind: "user" }, this.entries.user.size);
        blacklistSize.set({ kind: "ip" }, this.entries.ip.size);
      } catch (err) {
        this.log.warn({ err: String(err) }, "blacklist reload failed; keeping the last copy");
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }
}

function parse(raw: Record<string, string>, log: Logger): Map<string, BlacklistEntry> {
  const out = new Map<string, BlacklistEntry>();
  for (const [member, json] of Object.entries(raw)) {
    try {
      const e = JSON.parse(json) as Partial<BlacklistEntry>;
      out.set(member, { reason: String(e.reason ?? ""), expiresAtMs: Number(e.expiresAtMs ?? 0) });
    } catch {
      log.warn({ member }, "ignoring a malformed blacklist entry");
    }
  }
  return out;
}
