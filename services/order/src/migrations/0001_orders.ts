import { type Kysely, sql } from "kysely";

/**
 * The orders table of the data-plane contract. Column widths match what the
 * order-intent decoder accepts (shared data-plane/order-intent.ts, ids.ts), so
 * a valid entry always fits. Binary
 * collation: ids are opaque, "Alice" and "alice" are two users.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("orders")
    .ifNotExists()
    .addColumn("id", "varchar(26)", (c) => c.primaryKey())
    .addColumn("activity_id", "varchar(128)", (c) => c.notNull())
    .addColumn("product_id", "varchar(128)", (c) => c.notNull())
    .addColumn("user_id", "varchar(128)", (c) => c.notNull())
    .addColumn("quantity", "integer", (c) => c.notNull())
    .addColumn("unit_price_cents", "bigint", (c) => c.notNull())
    .addColumn("amount_cents", "bigint", (c) => c.notNull())
    .addColumn("currency", "varchar(8)", (c) => c.notNull())
    .addColumn("status", "varchar(20)", (c) => c.notNull())
    .addColumn("request_id", "varchar(128)", (c) => c.notNull())
    .addColumn("created_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("payment_deadline", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("paid_at", sql`datetime(3)`)
    .addColumn("cancelled_at", sql`datetime(3)`)
    .addColumn("cancel_reason", "varchar(255)")
    .addColumn("payment_id", "varchar(128)", (c) => c.unique())
    .addColumn("stock_settled", sql`tinyint`, (c) => c.notNull().defaultTo(0))
    .modifyEnd(sql`engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin`)
    .execute();
  await db.schema
    .createIndex("idx_orders_user_created")
    .on("orders")
    .columns(["user_id", "created_at"])
    .execute();
  await db.schema
    .createIndex("idx_orders_status_deadline")
    .on("orders")
    .columns(["status", "payment_deadline"])
    .execute();
  // The settle sweeper looks for final orders core was not told about yet: few rows, found fast.
  await db.schema
    .createIndex("idx_orders_unsettled")
    .on("orders")
    .columns(["stock_settled", "status"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("orders").ifExists().execute();
}
