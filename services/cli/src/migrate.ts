/**
 * Every service's MySQL migrations, in one place for the Helm pre-install /
 * pre-upgrade Job (`seckill migrate`). Services also migrate at start; running
 * them first means a new version never serves against an old schema.
 */
import type { Kysely } from "kysely";
import type { Migration } from "kysely/migration";
import { adminMigrations } from "../../admin/src/migrations/index.ts";
import { authMigrations } from "../../auth/src/migrations/index.ts";
import { migrations as orderMigrations } from "../../order/src/migrations/index.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { createDb, migrate } from "../../shared/src/stores/mysql.ts";

export const serviceMigrations: Record<string, Record<string, Migration>> = {
  auth: authMigrations,
  admin: adminMigrations,
  order: orderMigrations,
};

export async function migrateAll(mysqlUri: string): Promise<void> {
  const log = createLogger("migrate", process.env.LOG_LEVEL ?? "info");
  const db = createDb<unknown>(mysqlUri, { connectionLimit: 2 });
  try {
    for (const [service, migrations] of Object.entries(serviceMigrations)) {
      await migrate(db as Kysely<unknown>, service, migrations, log);
      log.info({ service }, "schema up to date");
    }
  } finally {
    await db.destroy();
  }
}
