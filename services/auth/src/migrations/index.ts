import type { Migration } from "kysely/migration";
import * as users from "./0001_users.ts";
import * as refreshTokens from "./0002_refresh_tokens.ts";

/** auth's migrations, applied in name order by shared mysql.ts `migrate(db, "auth", …)`. */
export const authMigrations: Record<string, Migration> = {
  "0001_users": users,
  "0002_refresh_tokens": refreshTokens,
};
