/**
 * The order-intent stream of the data-plane contract: seckill-core's reserve
 * script appends one entry per reservation to the activity's stream
 * (`activityKeys(id).orders`); order reads it with ORDER_CONSUMER_GROUP, turns
 * each entry into a row, and moves an entry it cannot use to the activity's
 * dead-letter stream. The field names live here only: core's script gets its
 * XADD arguments from `orderIntentLuaFields`, tools and tests write entries
 * with `encodeOrderIntent`, and order reads them with `decodeOrderIntent`.
 */
import { idProblem, MAX_ID_LENGTH, ORDER_ID_MAX_LENGTH, orderIdProblem } from "./ids.ts";
import { activityKeys } from "./keys.ts";

/** The consumer group every order instance reads the streams with (core creates it at warm-up). */
export const ORDER_CONSUMER_GROUP = "order";

/** The order-intent stream of an activity. */
export const orderIntentStream = (activityId: string) => activityKeys(activityId).orders;

/** The dead-letter stream of an activity's order intents (same hash slot as the stream). */
export const deadLetterStream = (activityId: string) => activityKeys(activityId).deadLetters;

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

/** The stream field of each intent property, in the order an entry carries them. */
export const ORDER_INTENT_FIELDS = {
  orderId: "oid",
  activityId: "act",
  userId: "uid",
  quantity: "qty",
  unitPriceCents: "price",
  currency: "cur",
  productId: "pid",
  deadlineMs: "dl",
  requestId: "rid",
  createdMs: "ts",
} as const satisfies Record<keyof OrderIntent, string>;

type IntentKey = keyof OrderIntent;
const intentKeys = Object.keys(ORDER_INTENT_FIELDS) as IntentKey[];

/** Most units in one intent (the per-user limit is far below). */
export const MAX_QUANTITY = 1_000_000;
/** Longest currency code (the orders column is varchar(8)). */
export const CURRENCY_MAX_LENGTH = 8;
/** Times are epoch ms before year 10000 (DATETIME(3) holds years 1000..9999). */
export const TIME_LIMIT_MS = 253_402_300_800_000;

/** The entry's field list [k1, v1, k2, v2, …], as XADD takes it and XRANGE returns it. */
export function encodeOrderIntent(intent: OrderIntent): string[] {
  return intentKeys.flatMap((key) => [ORDER_INTENT_FIELDS[key], String(intent[key])]);
}

/**
 * The XADD field list of a Lua script, from a Lua expression per property
 * (e.g. `{ orderId: "ARGV[5]", … }`): the script text is built from the field
 * names above when the module loads, so the script and the decoder cannot drift.
 */
export function orderIntentLuaFields(values: Record<IntentKey, string>): string {
  return intentKeys.map((key) => `'${ORDER_INTENT_FIELDS[key]}', ${values[key]}`).join(", ");
}

export type DecodedIntent = { ok: true; intent: OrderIntent } | { ok: false; reason: string };

/** Field list [k1, v1, k2, v2, …] as XREADGROUP returns it, as a map (first value wins). */
export function fieldMap(fields: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const key = fields[i]!;
    if (!map.has(key)) map.set(key, fields[i + 1]!);
  }
  return map;
}

const integer = /^-?\d+$/;

/**
 * Decodes and checks one entry of `activityId`'s stream. Lenient where
 * leniency loses nothing (unknown fields are ignored, the first of repeated
 * ones wins), strict where a value would make a wrong order or not fit the
 * orders table: ids follow the id grammar (ids.ts), every problem is named.
 */
export function decodeOrderIntent(activityId: string, fields: readonly string[]): DecodedIntent {
  const f = fieldMap(fields);
  const F = ORDER_INTENT_FIELDS;
  const problems: string[] = [];
  const text = (name: string, max: number, min = 1): string => {
    const value = f.get(name);
    if (value === undefined) problems.push(`${name} missing`);
    else if (value.length < min || value.length > max)
      problems.push(`${name} must have ${min}..${max} characters`);
    else return value;
    return "";
  };
  const id = (name: string, check = idProblem, max = MAX_ID_LENGTH): string => {
    const value = text(name, max);
    const problem = value ? check(name, value) : undefined;
    if (problem) problems.push(problem);
    return value;
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

  const orderId = id(F.orderId, orderIdProblem, ORDER_ID_MAX_LENGTH);
  const act = id(F.activityId);
  if (act && act !== activityId)
    problems.push(`${F.activityId} ${JSON.stringify(act)} does not match the stream's activity`);
  const userId = id(F.userId);
  const quantity = int(F.quantity, 1, MAX_QUANTITY);
  const unitPriceCents = int(F.unitPriceCents, 0, Number.MAX_SAFE_INTEGER);
  const currency = text(F.currency, CURRENCY_MAX_LENGTH);
  const productId = text(F.productId, MAX_ID_LENGTH, 0);
  const deadlineMs = int(F.deadlineMs, 1, Number.MAX_SAFE_INTEGER);
  const requestId = id(F.requestId);
  const createdMs = int(F.createdMs, 1, Number.MAX_SAFE_INTEGER);
  if (problems.length === 0 && !Number.isSafeInteger(quantity * unitPriceCents))
    problems.push(`${F.quantity} * ${F.unitPriceCents} overflows`);
  if (deadlineMs >= TIME_LIMIT_MS || createdMs >= TIME_LIMIT_MS)
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

/** The fields order adds to an entry it moves to the dead-letter stream. */
export const DEAD_LETTER_FIELDS = {
  /** The original field list as JSON, when it had an odd length (not a valid XADD list). */
  fields: "fields",
  entryId: "_entry_id",
  reason: "_reason",
  consumer: "_consumer",
  atMs: "_at",
} as const;

/** A dead-letter entry: the original fields (verbatim when they pair up), then why and who. */
export function encodeDeadLetter(d: {
  fields: readonly string[];
  entryId: string;
  reason: string;
  consumer: string;
  atMs: number;
}): string[] {
  const original =
    d.fields.length % 2 === 0
      ? [...d.fields]
      : [DEAD_LETTER_FIELDS.fields, JSON.stringify(d.fields)];
  return [
    ...original,
    DEAD_LETTER_FIELDS.entryId,
    d.entryId,
    DEAD_LETTER_FIELDS.reason,
    d.reason,
    DEAD_LETTER_FIELDS.consumer,
    d.consumer,
    DEAD_LETTER_FIELDS.atMs,
    String(d.atMs),
  ];
}
