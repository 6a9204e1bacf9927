/** Kysely types of the tables the order service owns. */
import type { ColumnType, Insertable, Selectable } from "kysely";

export type OrderStatusName = "PENDING_PAYMENT" | "PAID" | "CANCELLED";

/**
 * stock_settled: whether seckill-core was told about the final state
 * (ConfirmPayment after PAID, Release after CANCELLED).
 */
export const Settled = {
  /** Not yet (or not final yet); the settle sweeper retries final orders. */
  NO: 0,
  /** Core confirmed the payment or returned the stock. */
  YES: 1,
  /** Core disagreed (reservation unknown, or in the opposite final state): needs reconciliation. */
  CONFLICT: 2,
} as const;

export interface OrdersTable {
  /** Order id == reservation id (a ULID made by seckill-core). */
  id: string;
  activity_id: string;
  product_id: string;
  user_id: string;
  quantity: number;
  unit_price_cents: number;
  amount_cents: number;
  currency: string;
  status: OrderStatusName;
  request_id: string;
  created_at: Date;
  payment_deadline: Date;
  paid_at: Date | null;
  cancelled_at: Date | null;
  cancel_reason: string | null;
  payment_id: string | null;
  stock_settled: ColumnType<number, number | undefined, number>;
}

export interface Database {
  orders: OrdersTable;
}

export type OrderRow = Selectable<OrdersTable>;
export type NewOrderRow = Insertable<OrdersTable>;
