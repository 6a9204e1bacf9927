import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("users")
    .addColumn("id", "varchar(26)", (c) => c.primaryKey())
    .addColumn("username", "varchar(64)", (c) => c.notNull())
    .addColumn("password_hash", "varchar(255)", (c) => c.notNull())
    .addColumn("role", "varchar(16)", (c) => c.notNull().defaultTo("user"))
    .addColumn("provisioned", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("created_at", sql`datetime(3)`, (c) => c.notNull())
    .addUniqueConstraint("users_username_unique", ["username"])
    .modifyEnd(sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("users").execute();
}
