import { type Kysely, sql } from "kysely";

/**
 * The blacklist record. Redis holds a mirror (shared blacklist.ts) that every
 * app and gateway instance reads; this table is what the mirror is repaired
 * from. Binary collation: user ids are opaque.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("blacklist_entries")
    .addColumn("kind", "varchar(8)", (c) => c.notNull())
    .addColumn("value", "varchar(128)", (c) => c.notNull())
    .addColumn("reason", "varchar(500)", (c) => c.notNull())
    .addColumn("created_at", sql`datetime(3)`, (c) => c.notNull())
    .addColumn("expires_at", sql`datetime(3)`)
    .addColumn("created_by", "varchar(128)", (c) => c.notNull())
    .addPrimaryKeyConstraint("blacklist_entries_pk", ["kind", "value"])
    .modifyEnd(sql`engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin`)
    .execute();
  await db.schema
    .createIndex("idx_blacklist_expires")
    .on("blacklist_entries")
    .column("expires_at")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("blacklist_entries").ifExists().execute();
}
