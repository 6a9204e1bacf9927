import type { Migration } from "kysely/migration";
import * as catalog from "./0001_catalog.ts";
import * as blacklist from "./0002_blacklist.ts";

/** admin's migrations, applied in name order by shared mysql.ts `migrate(db, "admin", …)`. */
export const adminMigrations: Record<string, Migration> = {
  "0001_catalog": catalog,
  "0002_blacklist": blacklist,
};
