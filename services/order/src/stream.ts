/**
 * The order-intent stream of the data-plane contract (pure: keys, field names,
 * decoding and validation of one entry). seckill-core's reserve script appends
 * the entries; the order consumer turns them into rows.
 */
import type { NewOrderRow } from "./db.ts";

/** The consumer group every order instance reads with. */
export const GROUP = "order";

export const streamKey = (activityId: string) => `{act:${activityId}}:orders`;
/** Entries that cannot become an order row, with the reason; same hash slot as the stream. */
export const deadLetterKey = (activityId: string) => `{act:${activityId}}:orders:dead`;
/** Pub/sub channel of one order's status changes (message: the new status name). */
export const orderChannel = (orderId: string) => `order:${orderId}`;

/** One order intent as the stream carries it. */
export interface OrderIntent {
  orderId: string;
  activityId: string;
  userId: string;
  quantity: number;
  unitPriceCents: number;
  currency: string;
  productId: string;
  deadlineMs: number;
  requestId: string;
  createdMs: number;
}

export type ParsedEntry = { ok: true; intent: OrderIntent } | { ok: false; reason: string };

/** Widths of the orders columns: a value that passes here always fits its column. */
export const LIMITS = {
  orderId: 26,
  id: 128,
  currency: 8,
  maxQuantity: 1_000_000,
} as const;

const idPattern = /^[0-9A-Za-z]+$/;
const integer = /^-?\d+$/;

/** Field list [k1, v1, k2, v2, …] as XREADGROUP returns it, as a map (first value wins). */
export function fieldMap(fields: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const key = fields[i]!;
    if (!map.has(key)) map.set(key, fields[i + 1]!);
  }
  return map;
}

/**
 * Decodes and checks one entry of `{act:<activityId>}:orders`. Lenient where
 * leniency loses nothing (unknown fields are ignored), strict where a value
 * would not fit its column or would make a wrong order.
 */
export function parseEntry(activityId: string, fields: readonly string[]): ParsedEntry {
  const f = fieldMap(fields);
  const problems: string[] = [];
  const text = (name: string, max: number, min = 1): string => {
    const value = f.get(name);
    if (value === undefined) problems.push(`${name} missing`);
    else if (value.length < min || value.length > max)
      problems.push(`${name} must have ${min}..${max} characters`);
    return value ?? "";
  };
  const int = (name: string, min: number, max: number): number => {
    const value = f.get(name);
    if (value === undefined) {
      problems.push(`${name} missing`);
      return 0;
    }
    const n = Number(value);
    if (!integer.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`);
      return 0;
    }
    return n;
  };

  const orderId = text("oid", LIMITS.orderId);
  if (orderId && !idPattern.test(orderId)) problems.push("oid must be alphanumeric");
  const act = text("act", LIMITS.id);
  if (act && act !== activityId)
    problems.push(`act ${JSON.stringify(act)} does not match the stream's activity`);
  const userId = text("uid", LIMITS.id);
  const quantity = int("qty", 1, LIMITS.maxQuantity);
  const unitPriceCents = int("price", 0, Number.MAX_SAFE_INTEGER);
  const currency = text("cur", LIMITS.currency);
  const productId = text("pid", LIMITS.id, 0);
  const deadlineMs = int("dl", 1, Number.MAX_SAFE_INTEGER);
  const requestId = text("rid", LIMITS.id);
  const createdMs = int("ts", 1, Number.MAX_SAFE_INTEGER);
  if (problems.length === 0 && !Number.isSafeInteger(quantity * unitPriceCents))
    problems.push("qty * price overflows");
  // DATETIME(3) holds years 1000..9999.
  if (deadlineMs >= 253_402_300_800_000 || createdMs >= 253_402_300_800_000)
    problems.push("a time is beyond year 9999");

  if (problems.length > 0) return { ok: false, reason: problems.join("; ") };
  return {
    ok: true,
    intent: {
      orderId,
      activityId,
      userId,
      quantity,
      unitPriceCents,
      currency,
      productId,
      deadlineMs,
      requestId,
      createdMs,
    },
  };
}

/** The stream fields of an intent, exactly as the contract lists them (for tests and tools). */
export function intentFields(intent: OrderIntent): string[] {
  return [
    "oid",
    intent.orderId,
    "act",
    intent.activityId,
    "uid",
    intent.userId,
    "qty",
    String(intent.quantity),
    "price",
    String(intent.unitPriceCents),
    "cur",
    intent.currency,
    "pid",
    intent.productId,
    "dl",
    String(intent.deadlineMs),
    "rid",
    intent.requestId,
    "ts",
    String(intent.createdMs),
  ];
}

/** The row an intent becomes: PENDING_PAYMENT until paid or cancelled. */
export function intentRow(intent: OrderIntent): NewOrderRow {
  return {
    id: intent.orderId,
    activity_id: intent.activityId,
    product_id: intent.productId,
    user_id: intent.userId,
    quantity: intent.quantity,
    unit_price_cents: intent.unitPriceCents,
    amount_cents: intent.quantity * intent.unitPriceCents,
    currency: intent.currency,
    status: "PENDING_PAYMENT",
    request_id: intent.requestId,
    created_at: new Date(intent.createdMs),
    payment_deadline: new Date(intent.deadlineMs),
    paid_at: null,
    cancelled_at: null,
    cancel_reason: null,
    payment_id: null,
  };
}
