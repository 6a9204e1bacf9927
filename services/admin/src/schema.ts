/** The tables admin uses, as kysely sees them (see migrations/). */
import type { ColumnType } from "kysely";

export type StoredStatus = "DRAFT" | "PUBLISHED" | "ENDED";
export type BlacklistKindName = "user" | "ip";

export interface AdminDatabase {
  products: ProductsTable;
  activities: ActivitiesTable;
  blacklist_entries: BlacklistTable;
  /**
   * Owned by the order service (its migrations, its writes). Admin only reads it
   * for GetStats and Reconcile: a read-only reporting dependency on order's schema.
   */
  orders: OrdersReadTable;
}

export interface ProductsTable {
  id: string;
  name: string;
  description: string;
  image_url: string;
  price_cents: number;
  currency: string;
  created_at: ColumnType<Date, Date, never>;
  updated_at: Date;
  created_by: ColumnType<string, string, never>;
}

export interface ActivitiesTable {
  id: string;
  product_id: string;
  title: string;
  description: string;
  price_cents: number;
  currency: string;
  total_stock: number;
  per_user_limit: number;
  max_per_user_limit: number;
  start_at: Date;
  end_at: Date;
  payment_timeout_seconds: number;
  status: StoredStatus;
  revision: number;
  created_at: ColumnType<Date, Date, never>;
  updated_at: Date;
  published_at: Date | null;
  warmed_at: Date | null;
  ended_at: Date | null;
  end_reason: string | null;
  created_by: ColumnType<string, string, never>;
  updated_by: string;
}

export interface BlacklistTable {
  kind: BlacklistKindName;
  value: string;
  reason: string;
  created_at: Date;
  expires_at: Date | null;
  created_by: string;
}

/** The columns of order's table that admin reads (never writes). */
export interface OrdersReadTable {
  id: ColumnType<string, never, never>;
  activity_id: ColumnType<string, never, never>;
  user_id: ColumnType<string, never, never>;
  quantity: ColumnType<number, never, never>;
  status: ColumnType<"PENDING_PAYMENT" | "PAID" | "CANCELLED", never, never>;
  created_at: ColumnType<Date, never, never>;
  payment_deadline: ColumnType<Date, never, never>;
  paid_at: ColumnType<Date | null, never, never>;
  cancelled_at: ColumnType<Date | null, never, never>;
  /** 0 = core not told yet, 1 = told, 2 = core disagreed (order's Settled). */
  stock_settled: ColumnType<number, never, never>;
}
