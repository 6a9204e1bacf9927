import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createConnection } from "mysql2/promise";
import { type MariaDbServer, startMariaDb } from "../../shared/src/stack/index.ts";
import { migrateAll, serviceMigrations } from "./migrate.ts";

describe("seckill migrate", () => {
  let db: MariaDbServer;
  before(async () => {
    db = await startMariaDb();
  });
  after(async () => {
    await db?.stop();
  });

  it("creates every service's tables, records each service's history, and is idempotent", async () => {
    await migrateAll(db.uri);
    await migrateAll(db.uri);
    const conn = await createConnection(db.uri);
    try {
      const [tables] = await conn.query<import("mysql2").RowDataPacket[]>("SHOW TABLES");
      const names = new Set(tables.map((row) => String(Object.values(row)[0])));
      for (const table of ["users", "orders", "products", "activities"])
        assert.ok(names.has(table), `${table} exists`);
      for (const [service, migrations] of Object.entries(serviceMigrations)) {
        const [rows] = await conn.query<import("mysql2").RowDataPacket[]>(
          `SELECT name FROM kysely_migration_${service} ORDER BY name`,
        );
        assert.deepEqual(
          rows.map((r) => r.name),
          Object.keys(migrations).sort(),
          `${service} history`,
        );
      }
    } finally {
      await conn.end();
    }
  });
});
