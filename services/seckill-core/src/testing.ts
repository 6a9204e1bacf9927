/**
 * Test helpers for seckill-core's store: activity definitions. The proto
 * Activity builder and the reads of the raw Redis state (snapshotRedis,
 * auditActivity) are the shared test kit's (services/shared/src/testing).
 */
import type { ActivityDefinition } from "./activity.ts";

const HOUR = 3_600_000;

/** A definition with its window open now (an hour either side), stock 10, limit 2. */
export function definition(overrides: Partial<ActivityDefinition> = {}): ActivityDefinition {
  const now = Date.now();
  return {
    id: "act-1",
    totalStock: 10,
    startMs: now - HOUR,
    endMs: now + HOUR,
    perUserLimit: 2,
    paymentTimeoutSeconds: 900,
    revision: 1,
    priceCents: "1999",
    currency: "USD",
    productId: "prod-1",
    status: "PUBLISHED",
    ...overrides,
  };
}
