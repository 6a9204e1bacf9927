/**
 * The blacklist: MySQL holds the record (who, why, until when, added by whom);
 * Redis holds the mirror every app and gateway instance reads through shared
 * blacklist.ts (BlacklistCache: pub/sub-refreshed, effective within a second).
 * Every change writes MySQL first, then the mirror; the self-heal loop repairs
 * the mirror from MySQL (a lost Redis, a failed mirror write) and purges
 * expired entries.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely, Selectable } from "kysely";
import { blacklistKey } from "../../shared/src/data-plane/keys.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import {
  type BlacklistEntry as MirrorEntry,
  putBlacklistEntry,
  removeBlacklistEntry,
} from "../../shared/src/sale/blacklist.ts";
import type { Redis } from "../../shared/src/stores/redis.ts";
import { blacklistChanges, selfHealRepairs } from "./metrics.ts";
import { decodeToken, encodeToken } from "./paging.ts";
import type { AdminDatabase, BlacklistKindName, BlacklistTable } from "./schema.ts";
import { blacklistValue, reason as checkReason, invalid, pageSize } from "./validation.ts";

export type BlacklistRow = Selectable<BlacklistTable>;

export const KINDS: readonly BlacklistKindName[] = ["user", "ip"];

export interface BlacklistDeps {
  db: Kysely<AdminDatabase>;
  redis: Redis;
  log: Logger;
  now?: () => number;
}

/** The mirror's value for a row: exactly what BlacklistCache parses. */
export const mirrorJson = (row: Pick<BlacklistRow, "reason" | "expires_at">) =>
  JSON.stringify({
    reason: row.reason,
    expiresAtMs: row.expires_at ? row.expires_at.getTime() : 0,
  } satisfies MirrorEntry);

export interface MirrorRepair {
  put: number;
  removed: number;
  purged: number;
}

export class Blacklist {
  private readonly now: () => number;

  constructor(private readonly deps: BlacklistDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Adds or replaces an entry; effective everywhere within a second. */
  async add(
    kind: BlacklistKindName,
    rawValue: string,
    rawReason: string,
    expiresAtMs: number | undefined,
    by: string,
  ): Promise<BlacklistRow> {
    const value = blacklistValue(kind, rawValue);
    const why = checkReason("reason", rawReason);
    const nowMs = this.now();
    if (expiresAtMs !== undefined && expiresAtMs <= nowMs)
      throw invalid(`expires_at ${new Date(expiresAtMs).toISOString()} is in the past`);
    const row: BlacklistRow = {
      kind,
      value,
      reason: why,
      created_at: new Date(nowMs),
      expires_at: expiresAtMs === undefined ? null : new Date(expiresAtMs),
      created_by: by,
    };
    await this.deps.db
      .insertInto("blacklist_entries")
      .values(row)
      .onDuplicateKeyUpdate({
        reason: row.reason,
        created_at: row.created_at,
        expires_at: row.expires_at,
        created_by: row.created_by,
      })
      .execute();
    try {
      await putBlacklistEntry(this.deps.redis, kind, value, JSON.parse(mirrorJson(row)));
    } catch (err) {
      throw mirrorFailure(err);
    }
    blacklistChanges.inc({ op: "add", kind });
    this.deps.log.info(
      { kind, value, by, reason: why, expiresAt: row.expires_at?.toISOString() ?? null },
      "blacklist entry added",
    );
    return row;
  }

  /** Removes an entry; false when there was none (the mirror is cleaned either way). */
  async remove(kind: BlacklistKindName, rawValue: string, by: string): Promise<boolean> {
    const value = blacklistValue(kind, rawValue);
    const result = await this.deps.db
      .deleteFrom("blacklist_entries")
      .where("kind", "=", kind)
      .where("value", "=", value)
      .executeTakeFirst();
    try {
      await removeBlacklistEntry(this.deps.redis, kind, value);
    } catch (err) {
      throw mirrorFailure(err);
    }
    const removed = Number(result.numDeletedRows) > 0;
    if (removed) {
      blacklistChanges.inc({ op: "remove", kind });
      this.deps.log.info({ kind, value, by }, "blacklist entry removed");
    }
    return removed;
  }

  /** Unexpired entries ordered by kind, then value. */
  async list(
    kind: BlacklistKindName | undefined,
    size: number,
    token: string,
  ): Promise<{ items: BlacklistRow[]; nextPageToken: string }> {
    const limit = pageSize(size);
    const cursor = decodeToken("blacklist", token, 2);
    const now = new Date(this.now());
    let q = this.deps.db
      .selectFrom("blacklist_entries")
      .selectAll()
      .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", now)]))
      .orderBy("kind")
      .orderBy("value")
      .limit(limit + 1);
    if (kind) q = q.where("kind", "=", kind);
    if (cursor) {
      const [k, v] = cursor as [BlacklistKindName, string];
      q = q.where((eb) =>
        eb.or([eb("kind", ">", k), eb.and([eb("kind", "=", k), eb("value", ">", v)])]),
      );
    }
    const rows = await q.execute();
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return {
      items,
      nextPageToken:
        rows.length > limit && last ? encodeToken("blacklist", [last.kind, last.value]) : "",
    };
  }

  /**
   * Makes the Redis mirror equal to MySQL's unexpired entries and deletes
   * expired rows. Redis is read before MySQL, and every correction re-reads
   * its row first, so a concurrent add or remove is never undone.
   */
  async repairMirror(): Promise<MirrorRepair> {
    const { db, redis, log } = this.deps;
    const repair: MirrorRepair = { put: 0, removed: 0, purged: 0 };
    for (const kind of KINDS) {
      const mirror = await redis.hgetall(blacklistKey(kind));
      const now = new Date(this.now());
      const rows = await db
        .selectFrom("blacklist_entries")
        .selectAll()
        .where("kind", "=", kind)
        .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", now)]))
        .execute();
      const want = new Map(rows.map((r) => [r.value, mirrorJson(r)]));
      for (const [value, json] of want) {
        if (mirror[value] === json) continue;
        const row = await this.current(kind, value);
        if (!row) continue;
        await putBlacklistEntry(redis, kind, value, JSON.parse(mirrorJson(row)));
        repair.put++;
        selfHealRepairs.inc({ what: "blacklist_put" });
        log.info({ kind, value }, "self-heal: blacklist entry written to the Redis mirror");
      }
      for (const value of Object.keys(mirror)) {
        if (want.has(value)) continue;
        if (await this.current(kind, value)) continue;
        await removeBlacklistEntry(redis, kind, value);
        repair.removed++;
        selfHealRepairs.inc({ what: "blacklist_removed" });
        log.info(
          { kind, value },
          "self-heal: blacklist entry removed from the Redis mirror (absent or expired in MySQL)",
        );
      }
    }
    const purged = await db
      .deleteFrom("blacklist_entries")
      .where("expires_at", "<=", new Date(this.now()))
      .executeTakeFirst();
    repair.purged = Number(purged.numDeletedRows);
    if (repair.purged > 0) {
      selfHealRepairs.inc({ what: "blacklist_expired" }, repair.purged);
      log.info({ purged: repair.purged }, "expired blacklist entries deleted");
    }
    return repair;
  }

  /** The unexpired row, read now. */
  private current(kind: BlacklistKindName, value: string): Promise<BlacklistRow | undefined> {
    const now = new Date(this.now());
    return this.deps.db
      .selectFrom("blacklist_entries")
      .selectAll()
      .where("kind", "=", kind)
      .where("value", "=", value)
      .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", now)]))
      .executeTakeFirst();
  }
}

function mirrorFailure(err: unknown): ConnectError {
  return new ConnectError(
    `saved in MySQL, but the Redis mirror could not be written (${err instanceof Error ? err.message : String(err)}): ` +
      "retry the call; admin's self-heal loop also repairs the mirror",
    Code.Unavailable,
  );
}
