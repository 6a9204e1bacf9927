import type { Kysely } from "kysely";

/** Admin's stats and reconciliation count an activity's orders by status: without this they scan the table. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex("idx_orders_activity_status")
    .on("orders")
    .columns(["activity_id", "status"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("idx_orders_activity_status").on("orders").execute();
}
