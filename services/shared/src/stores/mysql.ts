import { Kysely, MysqlDialect } from "kysely";
import { type Migration, Migrator } from "kysely/migration";
import { createPool, type PoolOptions } from "mysql2";
import type { Logger } from "../runtime/log.ts";

/**
 * A kysely database on a mysql2 pool. Dates travel as UTC; big counters as
 * strings would surprise callers, so DECIMAL/BIGINT come back as numbers when
 * they fit (ids are strings in our schema anyway).
 */
export function createDb<DB>(uri: string, options: PoolOptions = {}): Kysely<DB> {
  const pool = createPool({
    uri,
    connectionLimit: 16,
    timezone: "Z",
    supportBigNumbers: true,
    bigNumberStrings: false,
    dateStrings: false,
    ...options,
  });
  // Sessions in UTC, so NOW() and friends agree with the UTC values we store.
  pool.on("connection", (connection) => {
    connection.query("SET time_zone = '+00:00'");
  });
  return new Kysely<DB>({ dialect: new MysqlDialect({ pool }) });
}

/**
 * Runs a service's migrations, each service with its own history table so
 * services that share one database never step on each other's migrations.
 */
export async function migrate(
  db: Kysely<unknown>,
  service: string,
  migrations: Record<string, Migration>,
  log: Logger,
): Promise<void> {
  const table = `kysely_migration_${service.replace(/[^a-z0-9]/gi, "_")}`;
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableName: table,
    migrationLockTableName: `${table}_lock`,
  });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) {
    if (r.status === "Success") log.info({ migration: r.migrationName }, "migration applied");
    if (r.status === "Error") log.error({ migration: r.migrationName }, "migration failed");
  }
  if (error) throw error instanceof Error ? error : new Error(String(error));
}
