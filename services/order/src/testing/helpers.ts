/**
 * Small helpers shared by order's integration tests and benchmark (polling,
 * metrics and codes are the shared test kit's: services/shared/src/testing).
 */
import { type Kysely, sql } from "kysely";
import {
  ORDER_CONSUMER_GROUP,
  orderIntentStream,
} from "../../../shared/src/data-plane/order-intent.ts";
import type { Redis } from "../../../shared/src/stores/redis.ts";
import type { Database } from "../db.ts";

export async function rowCount(db: Kysely<Database>, activityId: string): Promise<number> {
  const row = await db
    .selectFrom("orders")
    .select(sql<number>`count(*)`.as("n"))
    .where("activity_id", "=", activityId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** XPENDING summary of the group: total pending and per consumer. */
export async function pending(
  redis: Redis,
  activityId: string,
): Promise<{ count: number; consumers: Record<string, number> }> {
  const reply = (await redis.call(
    "XPENDING",
    orderIntentStream(activityId),
    ORDER_CONSUMER_GROUP,
  )) as [number, string | null, string | null, [string, string][] | null];
  const consumers: Record<string, number> = {};
  for (const [name, n] of reply[3] ?? []) consumers[name] = Number(n);
  return { count: Number(reply[0]), consumers };
}
