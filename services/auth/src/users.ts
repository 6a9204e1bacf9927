/** The users table: lookups, single inserts and the bulk insert of ProvisionUsers. */
import type { Insertable, Kysely, Selectable } from "kysely";
import type { Role } from "../../shared/src/transport/identity.ts";
import type { AuthDatabase, UsersTable } from "./schema.ts";

export type UserRow = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;

/** MySQL's duplicate-key error (ER_DUP_ENTRY). */
export function isDuplicateKey(err: unknown): boolean {
  return (err as { errno?: number } | undefined)?.errno === 1062;
}

/**
 * mysql2 attaches the statement, values inlined, to its errors (`err.sql`), and
 * error logs serialize it: strip it from errors of statements that carry a
 * password hash, so a failed INSERT never writes hashes to the logs.
 */
async function withoutStatement<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err && typeof err === "object" && "sql" in err) delete (err as { sql?: string }).sql;
    throw err;
  }
}

/** Rows per multi-row INSERT: ~7 placeholders each, far below MySQL's 65,535. */
export const INSERT_CHUNK = 1000;

export class UserStore {
  constructor(private readonly db: Kysely<AuthDatabase>) {}

  byUsername(username: string): Promise<UserRow | undefined> {
    return this.db
      .selectFrom("users")
      .selectAll()
      .where("username", "=", username)
      .executeTakeFirst();
  }

  byId(id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom("users").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Inserts a user; "exists" when the username is taken (also under a race). */
  async insert(user: NewUser): Promise<"created" | "exists"> {
    try {
      await withoutStatement(() => this.db.insertInto("users").values(user).execute());
      return "created";
    } catch (err) {
      if (isDuplicateKey(err)) return "exists";
      throw err;
    }
  }

  async setPasswordHash(id: string, passwordHash: string): Promise<void> {
    await withoutStatement(() =>
      this.db
        .updateTable("users")
        .set({ password_hash: passwordHash })
        .where("id", "=", id)
        .execute(),
    );
  }

  /**
   * Multi-row INSERT IGNORE of `users` (one statement per INSERT_CHUNK rows):
   * existing usernames are left unchanged. Returns how many rows were created.
   */
  async insertIgnore(users: readonly NewUser[]): Promise<number> {
    if (users.length === 0) return 0;
    const result = await withoutStatement(() =>
      this.db.insertInto("users").ignore().values(users).executeTakeFirst(),
    );
    return Number(result.numInsertedOrUpdatedRows ?? 0n);
  }

  /** id, role and origin of the given usernames that exist. */
  async lookup(
    usernames: readonly string[],
  ): Promise<Map<string, { id: string; role: Role; provisioned: boolean }>> {
    const out = new Map<string, { id: string; role: Role; provisioned: boolean }>();
    if (usernames.length === 0) return out;
    const rows = await this.db
      .selectFrom("users")
      .select(["id", "username", "role", "provisioned"])
      .where("username", "in", usernames)
      .execute();
    for (const row of rows) {
      out.set(row.username, { id: row.id, role: row.role, provisioned: !!row.provisioned });
    }
    return out;
  }
}
