/**
 * Refresh-token rotation with reuse detection (OAuth 2.0 Security BCP §4.14):
 * every Refresh consumes its token and issues a successor in the same family;
 * presenting an already-consumed token means it was copied, so the whole
 * family is revoked and the user must log in again.
 */
import { type Kysely, sql, type Transaction } from "kysely";
import type { AuthDatabase } from "./schema.ts";

export type ConsumeResult =
  | { ok: true }
  /** Already consumed once: a replay; the family has just been revoked. */
  | { ok: false; reason: "reused"; userId: string; familyId: string }
  /** Unknown, revoked or expired. */
  | { ok: false; reason: "invalid" };

export class SessionStore {
  constructor(private readonly db: Kysely<AuthDatabase>) {}

  async record(
    token: { jti: string; familyId: string; userId: string; expiresAt: Date },
    now = new Date(),
    trx: Kysely<AuthDatabase> | Transaction<AuthDatabase> = this.db,
  ): Promise<void> {
    await trx
      .insertInto("refresh_tokens")
      .values({
        id: token.jti,
        family_id: token.familyId,
        user_id: token.userId,
        created_at: now,
        expires_at: token.expiresAt,
      })
      .execute();
  }

  /**
   * Consumes `jti` and, only if that worked, runs `next` (which records the
   * successor) in the same transaction: a failure in between never burns the
   * token, and two concurrent refreshes with one token cannot both succeed.
   */
  async consume<T>(
    jti: string,
    now: Date,
    next: (trx: Transaction<AuthDatabase>) => Promise<T>,
  ): Promise<{ result: ConsumeResult; value?: T }> {
    const outcome = await this.db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable("refresh_tokens")
        .set({ used_at: now })
        .where("id", "=", jti)
        .where("used_at", "is", null)
        .where("revoked_at", "is", null)
        .where("expires_at", ">", now)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 1) {
        return { result: { ok: true } as ConsumeResult, value: await next(trx) };
      }
      const row = await trx
        .selectFrom("refresh_tokens")
        .select(["user_id", "family_id", "used_at", "revoked_at"])
        .where("id", "=", jti)
        .executeTakeFirst();
      if (row?.used_at && !row.revoked_at) {
        return {
          result: {
            ok: false,
            reason: "reused",
            userId: row.user_id,
            familyId: row.family_id,
          } as ConsumeResult,
        };
      }
      return { result: { ok: false, reason: "invalid" } as ConsumeResult };
    });
    if (!outcome.result.ok && outcome.result.reason === "reused") {
      await this.revokeFamily(outcome.result.familyId, now);
    }
    return outcome;
  }

  async revokeFamily(familyId: string, now = new Date()): Promise<number> {
    const res = await this.db
      .updateTable("refresh_tokens")
      .set({ revoked_at: now })
      .where("family_id", "=", familyId)
      .where("revoked_at", "is", null)
      .executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  /** Deletes rows expired before `now`, at most `limit` per call. */
  async purgeExpired(now = new Date(), limit = 10_000): Promise<number> {
    const res =
      await sql`DELETE FROM refresh_tokens WHERE expires_at < ${now} LIMIT ${sql.lit(limit)}`.execute(
        this.db,
      );
    return Number(res.numAffectedRows ?? 0n);
  }
}
