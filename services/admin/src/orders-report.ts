/**
 * Reads of order's table `orders` (same database, owned and migrated by the
 * order service): a read-only reporting dependency for GetStats and Reconcile.
 * Admin never writes it. Without the table (order not deployed or not
 * migrated yet) GetStats shows zero orders and Reconcile refuses.
 *
 * `orders` is indexed by (activity_id, status) (order's migration
 * 0002_orders_by_activity), so both reads visit only the activity's rows:
 * counts() groups them by status, facts() pages through them by id.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { OrderFacts, OrderStatusName } from "./reconcile-rules.ts";
import type { AdminDatabase } from "./schema.ts";

export interface StatusCount {
  rows: number;
  units: number;
}

export type OrderCounts = Record<OrderStatusName, StatusCount>;

const ER_NO_SUCH_TABLE = 1146;
const isMissingTable = (err: unknown) =>
  (err as { errno?: number } | undefined)?.errno === ER_NO_SUCH_TABLE;

/** Rows per page when reading an activity's orders. */
const PAGE = 5000;

export class OrdersReport {
  private warnedMissing = false;

  constructor(
    private readonly db: Kysely<AdminDatabase>,
    private readonly log: Logger,
  ) {}

  /** Rows and units per status; undefined when the orders table does not exist. */
  async counts(activityId: string): Promise<OrderCounts | undefined> {
    let rows: { status: OrderStatusName; rows: number | string; units: number | string | null }[];
    try {
      rows = await this.db
        .selectFrom("orders")
        .select((eb) => [
          "status",
          eb.fn.countAll<number>().as("rows"),
          eb.fn.sum<number>("quantity").as("units"),
        ])
        .where("activity_id", "=", activityId)
        .groupBy("status")
        .execute();
    } catch (err) {
      if (!isMissingTable(err)) throw err;
      if (!this.warnedMissing) {
        this.warnedMissing = true;
        this.log.warn(
          "table `orders` does not exist (order service not migrated?): counting 0 orders",
        );
      }
      return undefined;
    }
    const counts: OrderCounts = {
      PENDING_PAYMENT: { rows: 0, units: 0 },
      PAID: { rows: 0, units: 0 },
      CANCELLED: { rows: 0, units: 0 },
    };
    for (const r of rows)
      if (r.status in counts)
        counts[r.status] = { rows: Number(r.rows), units: Number(r.units ?? 0) };
    return counts;
  }

  /** Every order row of the activity, by id; FAILED_PRECONDITION without the table. */
  async facts(activityId: string): Promise<Map<string, OrderFacts>> {
    const out = new Map<string, OrderFacts>();
    let after = "";
    for (;;) {
      let page: {
        id: string;
        user_id: string;
        quantity: number;
        status: OrderStatusName;
        stock_settled: number;
        paid_at: Date | null;
        cancelled_at: Date | null;
      }[];
      try {
        page = await this.db
          .selectFrom("orders")
          .select([
            "id",
            "user_id",
            "quantity",
            "status",
            "stock_settled",
            "paid_at",
            "cancelled_at",
          ])
          .where("activity_id", "=", activityId)
          .where("id", ">", after)
          .orderBy("id")
          .limit(PAGE)
          .execute();
      } catch (err) {
        if (isMissingTable(err))
          throw new ConnectError(
            "table `orders` does not exist in admin's database: Reconcile needs the order service's tables (same MYSQL_URI)",
            Code.FailedPrecondition,
          );
        throw err;
      }
      for (const r of page)
        out.set(r.id, {
          user: r.user_id,
          qty: Number(r.quantity),
          status: r.status,
          settled: Number(r.stock_settled),
          finalMs: (r.paid_at ?? r.cancelled_at)?.getTime(),
        });
      if (page.length < PAGE) return out;
      after = page[page.length - 1]!.id;
    }
  }
}
