/** Small helpers shared by order's integration tests and benchmark. */
import { type Kysely, sql } from "kysely";
import { metricsRegistry } from "../../../shared/src/runtime/metrics.ts";
import type { Redis } from "../../../shared/src/stores/redis.ts";
import type { Database } from "../db.ts";
import { GROUP, streamKey } from "../stream.ts";

/** Polls until `check` holds; throws with `what` after `timeoutMs`. */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
  everyMs = 25,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

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
  const reply = (await redis.call("XPENDING", streamKey(activityId), GROUP)) as [
    number,
    string | null,
    string | null,
    [string, string][] | null,
  ];
  const consumers: Record<string, number> = {};
  for (const [name, n] of reply[3] ?? []) consumers[name] = Number(n);
  return { count: Number(reply[0]), consumers };
}

/** Reads a counter / gauge of this process's registry for one label set (0 when absent). */
export async function metricValue(
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = metricsRegistry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  let sum = 0;
  for (const v of data.values as {
    value: number;
    labels: Record<string, unknown>;
    metricName?: string;
  }[]) {
    // Histograms: count the observations.
    if (v.metricName !== undefined && v.metricName !== `${name}_count`) continue;
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) sum += v.value;
  }
  return sum;
}

/** Sums a metric of a Prometheus text page for the series matching every label given. */
export function scrapeValue(page: string, name: string, labels: Record<string, string> = {}) {
  let sum = 0;
  for (const line of page.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
