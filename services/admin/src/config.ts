import { z } from "zod";
import { baseConfigSchema, int } from "../../shared/src/runtime/config.ts";

/** The admin service's settings: the base ones plus these (all from env). */
export const adminConfigSchema = baseConfigSchema
  .extend({
    /** mysql://user:pass@host:port/db: products, activities, blacklist (and order's `orders`, read-only). */
    MYSQL_URI: z.string().min(1),
    /** redis://host:port: the blacklist mirror every app and gateway reads. */
    REDIS_URL: z.string().min(1),
    /**
     * The stock's Redis (seckill-core's REDIS_URL), read-only: reconciliation and the buy
     * rate read core's keys. Defaults to REDIS_URL.
     */
    CORE_REDIS_URL: z.string().min(1).optional(),

    /** payment_timeout_seconds of an activity created with 0. */
    DEFAULT_PAYMENT_TIMEOUT_SECONDS: int(1, 7 * 86_400, 900),
    /** Bounds for payment_timeout_seconds (INVALID_ARGUMENT outside). */
    MIN_PAYMENT_TIMEOUT_SECONDS: int(1, 7 * 86_400, 5),
    MAX_PAYMENT_TIMEOUT_SECONDS: int(1, 7 * 86_400, 86_400),

    /** How often published activities are checked against etcd (and the blacklist mirror against MySQL). */
    SELF_HEAL_INTERVAL_MS: int(100, 3_600_000, 30_000),
    /**
     * Reconcile: how long a reservation may wait for its order row, or a final order for
     * core to be told, before it counts as a mismatch rather than work in flight.
     */
    RECONCILE_GRACE_SECONDS: int(0, 86_400, 60),
  })
  .superRefine((c, ctx) => {
    if (c.MIN_PAYMENT_TIMEOUT_SECONDS > c.MAX_PAYMENT_TIMEOUT_SECONDS)
      ctx.addIssue({
        code: "custom",
        path: ["MIN_PAYMENT_TIMEOUT_SECONDS"],
        message: "must not be above MAX_PAYMENT_TIMEOUT_SECONDS",
      });
    if (
      c.DEFAULT_PAYMENT_TIMEOUT_SECONDS < c.MIN_PAYMENT_TIMEOUT_SECONDS ||
      c.DEFAULT_PAYMENT_TIMEOUT_SECONDS > c.MAX_PAYMENT_TIMEOUT_SECONDS
    )
      ctx.addIssue({
        code: "custom",
        path: ["DEFAULT_PAYMENT_TIMEOUT_SECONDS"],
        message: "must lie between MIN_ and MAX_PAYMENT_TIMEOUT_SECONDS",
      });
  });

export type AdminConfig = z.infer<typeof adminConfigSchema>;
