/**
 * An activity definition (the proto `Activity` admin writes to etcd and sends
 * to WarmUp) as the fields core keeps in the activity's Redis meta hash.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Activity, ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";

/** What the meta hash holds; `status` "ENDED" means ended early by admin. */
export interface ActivityDefinition {
  id: string;
  totalStock: number;
  startMs: number;
  endMs: number;
  perUserLimit: number;
  paymentTimeoutSeconds: number;
  revision: number;
  priceCents: string;
  currency: string;
  productId: string;
  status: "PUBLISHED" | "ENDED";
}

/** The definition is unusable; `precondition` marks a valid one in the wrong state (a draft). */
export class DefinitionError extends Error {
  override name = "DefinitionError";
  constructor(
    message: string,
    readonly precondition = false,
  ) {
    super(message);
  }
}

/** Counters are Lua numbers (doubles): keep every integer exactly representable. */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Checks and converts an activity; throws DefinitionError naming the first bad field. */
export function toDefinition(activity: Activity | undefined): ActivityDefinition {
  if (!activity) throw new DefinitionError("activity is required");
  const where = `activity ${JSON.stringify(activity.id)}`;
  if (!activity.id) throw new DefinitionError("activity.id is required");
  if (activity.status === ActivityStatus.DRAFT)
    throw new DefinitionError(`${where} is a draft: publish it first`, true);
  if (activity.totalStock < 0n || activity.totalStock > MAX_SAFE)
    throw new DefinitionError(`${where}: total_stock ${activity.totalStock} is out of range`);
  if (activity.perUserLimit < 1)
    throw new DefinitionError(`${where}: per_user_limit must be at least 1`);
  if (activity.paymentTimeoutSeconds < 1)
    throw new DefinitionError(`${where}: payment_timeout_seconds must be at least 1`);
  if (!activity.startTime || !activity.endTime)
    throw new DefinitionError(`${where}: start_time and end_time are required`);
  const startMs = timestampMs(activity.startTime);
  const endMs = timestampMs(activity.endTime);
  if (!(endMs > startMs)) throw new DefinitionError(`${where}: end_time must be after start_time`);
  if (activity.revision < 0n || activity.revision > MAX_SAFE)
    throw new DefinitionError(`${where}: revision ${activity.revision} is out of range`);
  if (activity.priceCents < 0n) throw new DefinitionError(`${where}: price_cents is negative`);
  return {
    id: activity.id,
    totalStock: Number(activity.totalStock),
    startMs,
    endMs,
    perUserLimit: activity.perUserLimit,
    paymentTimeoutSeconds: activity.paymentTimeoutSeconds,
    revision: Number(activity.revision),
    priceCents: activity.priceCents.toString(),
    currency: activity.currency,
    productId: activity.productId,
    status: activity.status === ActivityStatus.ENDED ? "ENDED" : "PUBLISHED",
  };
}
