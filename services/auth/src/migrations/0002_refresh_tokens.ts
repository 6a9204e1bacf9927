import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("refresh_tokens")
    .addColumn("id", "varchar(26)", (c) => c.primaryKey())
    .addColumn("family_id", "varchar(26)", (c) => c.notNull())
    .addColumn("user_id", "varchar(26)", (c) => c.notNull())
    .addColumn("created_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("expires_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("used_at", sql`datetime(3)`)
    .addColumn("revoked_at", sql`datetime(3)`)
    .modifyEnd(sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`)
    .execute();
  await db.schema
    .createIndex("refresh_tokens_family")
    .on("refresh_tokens")
    .column("family_id")
    .execute();
  await db.schema
    .createIndex("refresh_tokens_expires")
    .on("refresh_tokens")
    .column("expires_at")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("refresh_tokens").execute();
}
