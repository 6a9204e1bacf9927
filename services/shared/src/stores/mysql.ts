import { Kysely, MysqlDialect, sql } from "kysely";
import { type Migration, Migrator } from "kysely/migration";
import { createPool, type PoolOptions } from "mysql2";
import type { Logger } from "../runtime/log.ts";
import { backoffMs, sleep } from "../runtime/time.ts";

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

/** Error codes of a MySQL that is not reachable (yet): pods start in any order. */
const UNREACHABLE = ["ECONNREFUSED", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"];

/**
 * Waits until MySQL answers a query, retrying while it is not reachable;
 * after `timeoutMs` fails with a readable message (the process then exits 1).
 * Any other error (a wrong password, a missing database) fails at once.
 */
export async function waitForMysql<DB>(
  db: Kysely<DB>,
  log: Logger,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      await sql`SELECT 1`.execute(db);
      return;
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      if (!UNREACHABLE.includes(code)) throw err;
      if (Date.now() > deadline) {
        throw new Error(`mysql is unreachable: ${(err as Error).message}`, { cause: err });
      }
      log.warn({ code }, "MySQL not reachable yet; waiting");
      await sleep(backoffMs(attempt, 2000));
    }
  }
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
