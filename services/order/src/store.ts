/**
 * The orders table: queries and the conditional updates of the state machine.
 * Every transition is ONE conditional UPDATE whose WHERE holds the start state,
 * so of two racing transitions exactly one changes the row. Times come from the
 * database clock (UTC_TIMESTAMP: rows hold UTC whatever the session time zone).
 */
import { type Kysely, sql } from "kysely";
import { type Database, type OrderRow, Settled } from "./db.ts";
import { CancelReason } from "./state.ts";

const now = sql<Date>`utc_timestamp(3)`;

/** Pay with a payment_id that another order already used. */
export class PaymentIdInUse extends Error {
  override name = "PaymentIdInUse";
}

export interface PageCursor {
  createdMs: number;
  id: string;
}

export class OrderStore {
  constructor(readonly db: Kysely<Database>) {}

  async get(id: string): Promise<OrderRow | undefined> {
    return this.db.selectFrom("orders").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** A user's orders, newest first, after `after` (keyset paging on created_at, id). */
  async listByUser(
    userId: string,
    opts: { activityId?: string; after?: PageCursor; limit: number },
  ): Promise<OrderRow[]> {
    let query = this.db.selectFrom("orders").selectAll().where("user_id", "=", userId);
    if (opts.activityId) query = query.where("activity_id", "=", opts.activityId);
    const after = opts.after;
    if (after) {
      const at = new Date(after.createdMs);
      query = query.where((eb) =>
        eb.or([
          eb("created_at", "<", at),
          eb.and([eb("created_at", "=", at), eb("id", "<", after.id)]),
        ]),
      );
    }
    return query.orderBy("created_at", "desc").orderBy("id", "desc").limit(opts.limit).execute();
  }

  /** PENDING_PAYMENT → PAID if the deadline has not passed. True when this call won. */
  async tryPay(id: string, paymentId: string): Promise<boolean> {
    try {
      const result = await this.db
        .updateTable("orders")
        .set({ status: "PAID", payment_id: paymentId, paid_at: now })
        .where("id", "=", id)
        .where("status", "=", "PENDING_PAYMENT")
        .where("payment_deadline", ">", now)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    } catch (err) {
      if ((err as { code?: string }).code === "ER_DUP_ENTRY")
        throw new PaymentIdInUse(`payment_id ${paymentId} was already used for another order`);
      throw err;
    }
  }

  /** PENDING_PAYMENT → CANCELLED (buyer or admin). True when this call won. */
  async tryCancel(id: string, reason: string): Promise<boolean> {
    const result = await this.db
      .updateTable("orders")
      .set({ status: "CANCELLED", cancelled_at: now, cancel_reason: reason })
      .where("id", "=", id)
      .where("status", "=", "PENDING_PAYMENT")
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** PENDING_PAYMENT → CANCELLED for one order past its deadline. True when this call won. */
  async tryExpire(id: string): Promise<boolean> {
    const result = await this.db
      .updateTable("orders")
      .set({ status: "CANCELLED", cancelled_at: now, cancel_reason: CancelReason.TIMEOUT })
      .where("id", "=", id)
      .where("status", "=", "PENDING_PAYMENT")
      .where("payment_deadline", "<=", now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Cancels up to `limit` orders whose payment deadline has passed and returns
   * exactly the rows THIS call cancelled. The rows are picked and locked with
   * FOR UPDATE SKIP LOCKED, so two sweepers never pick the same row and a Pay
   * holding a row's lock is skipped (it wins or loses on its own condition);
   * the update inside the same transaction therefore changes every picked row.
   */
  async cancelExpired(limit: number): Promise<OrderRow[]> {
    return this.db
      .transaction()
      .setIsolationLevel("read committed")
      .execute(async (trx) => {
        const picked = await trx
          .selectFrom("orders")
          .select("id")
          .where("status", "=", "PENDING_PAYMENT")
          .where("payment_deadline", "<=", now)
          .orderBy("payment_deadline")
          .limit(limit)
          .forUpdate()
          .skipLocked()
          .execute();
        if (picked.length === 0) return [];
        const ids = picked.map((r) => r.id);
        const result = await trx
          .updateTable("orders")
          .set({ status: "CANCELLED", cancelled_at: now, cancel_reason: CancelReason.TIMEOUT })
          .where("id", "in", ids)
          .where("status", "=", "PENDING_PAYMENT")
          .executeTakeFirst();
        if (Number(result.numUpdatedRows) !== ids.length)
          throw new Error(
            `deadline sweep: ${ids.length} rows locked but ${result.numUpdatedRows} updated; rolled back`,
          );
        return trx.selectFrom("orders").selectAll().where("id", "in", ids).execute();
      });
  }

  /** Records that core was told (or disagreed); only the first report counts. */
  async markSettled(id: string, value: (typeof Settled)["YES"] | (typeof Settled)["CONFLICT"]) {
    await this.db
      .updateTable("orders")
      .set({ stock_settled: value })
      .where("id", "=", id)
      .where("stock_settled", "=", Settled.NO)
      .execute();
  }

  /** Final orders core has not been told about, whose change is at least `graceMs` old. */
  async unsettled(graceMs: number, limit: number): Promise<OrderRow[]> {
    const before = sql<Date>`date_sub(utc_timestamp(3), interval ${graceMs * 1000} microsecond)`;
    return this.db
      .selectFrom("orders")
      .selectAll()
      .where("stock_settled", "=", Settled.NO)
      .where("status", "in", ["PAID", "CANCELLED"])
      .where((eb) => eb(eb.fn.coalesce("paid_at", "cancelled_at"), "<=", before))
      .limit(limit)
      .execute();
  }
}
