import type { Migration } from "kysely/migration";
import * as orders from "./0001_orders.ts";
import * as ordersByActivity from "./0002_orders_by_activity.ts";

/** Every migration of the order service, applied in key order by shared mysql.ts `migrate`. */
export const migrations: Record<string, Migration> = {
  "0001_orders": orders,
  "0002_orders_by_activity": ordersByActivity,
};
