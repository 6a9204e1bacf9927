import { type Kysely, sql } from "kysely";

/**
 * Products and activities. Times are DATETIME(3) in UTC (milliseconds, like the
 * protos after admin truncates them). Ids are ULIDs (shared ids.ts), so
 * `ORDER BY id DESC` is newest first.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("products")
    .addColumn("id", "varchar(26)", (c) => c.primaryKey())
    .addColumn("name", "varchar(200)", (c) => c.notNull())
    .addColumn("description", "text", (c) => c.notNull())
    .addColumn("image_url", "varchar(1024)", (c) => c.notNull())
    .addColumn("price_cents", "bigint", (c) => c.notNull())
    .addColumn("currency", sql`char(3)`, (c) => c.notNull())
    .addColumn("created_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("updated_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("created_by", "varchar(128)", (c) => c.notNull())
    .modifyEnd(sql`engine = InnoDB default charset = utf8mb4 collate = utf8mb4_unicode_ci`)
    .execute();

  await db.schema
    .createTable("activities")
    .addColumn("id", "varchar(26)", (c) => c.primaryKey())
    .addColumn("product_id", "varchar(26)", (c) =>
      c.notNull().references("products.id").onDelete("restrict"),
    )
    .addColumn("title", "varchar(200)", (c) => c.notNull())
    .addColumn("description", "text", (c) => c.notNull())
    .addColumn("price_cents", "bigint", (c) => c.notNull())
    .addColumn("currency", sql`char(3)`, (c) => c.notNull())
    .addColumn("total_stock", "bigint", (c) => c.notNull())
    .addColumn("per_user_limit", "integer", (c) => c.notNull())
    // The highest per-user limit in force while published: what a buyer may legitimately hold.
    .addColumn("max_per_user_limit", "integer", (c) => c.notNull())
    .addColumn("start_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("end_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("payment_timeout_seconds", "integer", (c) => c.notNull())
    // DRAFT | PUBLISHED | ENDED (LIVE and SOLD_OUT are derived when answering).
    .addColumn("status", "varchar(16)", (c) => c.notNull())
    .addColumn("revision", "bigint", (c) => c.notNull())
    .addColumn("created_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("updated_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("published_at", sql`datetime(3)`)
    // Set once core has the stock: from then on, never ask core to create it again.
    .addColumn("warmed_at", sql`datetime(3)`)
    .addColumn("ended_at", sql`datetime(3)`)
    .addColumn("end_reason", "varchar(500)")
    .addColumn("created_by", "varchar(128)", (c) => c.notNull())
    .addColumn("updated_by", "varchar(128)", (c) => c.notNull())
    .modifyEnd(sql`engine = InnoDB default charset = utf8mb4 collate = utf8mb4_unicode_ci`)
    .execute();
  await db.schema
    .createIndex("idx_activities_status_id")
    .on("activities")
    .columns(["status", "id"])
    .execute();
  await db.schema
    .createIndex("idx_activities_product")
    .on("activities")
    .columns(["product_id", "status"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("activities").ifExists().execute();
  await db.schema.dropTable("products").ifExists().execute();
}
