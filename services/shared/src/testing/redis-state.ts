/**
 * Reads of the raw Redis state of the data plane, for tests: every key with
 * its value (before/after comparisons), and an audit of one activity's
 * invariants, whichever service wrote it.
 */
import type { Redis } from "ioredis";
import { activityKeys } from "../data-plane/keys.ts";
import { ORDER_INTENT_FIELDS } from "../data-plane/order-intent.ts";

/** Every key (matching `pattern`) with its type and full value, for before/after comparisons. */
export async function snapshotRedis(redis: Redis, pattern = "*"): Promise<Record<string, unknown>> {
  const keys = (await scanAll(redis, pattern)).sort();
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const type = await redis.type(key);
    if (type === "string") out[key] = await redis.get(key);
    else if (type === "hash") out[key] = await redis.hgetall(key);
    else if (type === "stream") {
      const groups = await redis.xinfo("GROUPS", key);
      out[key] = { entries: await redis.xrange(key, "-", "+"), groups };
    } else out[key] = type;
  }
  return out;
}

export async function scanAll(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  return keys;
}

export interface ActivityAudit {
  total: number;
  stock: number;
  reserved: number;
  paid: number;
  /** Reservation hashes by status. */
  reservations: Map<string, { user: string; qty: number; status: string; requestId: string }>;
  /** Order ids on the stream, in order. */
  streamOrderIds: string[];
  users: Map<string, number>;
  /** Request id → remembered answer. */
  requests: Map<string, string>;
  /** Every broken invariant, in words; empty when all hold. */
  violations: string[];
}

/**
 * Reads one activity's whole state and checks the invariants that can be
 * checked from Redis alone: I1 (no oversell), I4 (one reservation per request
 * id, one stream entry per reservation), I5 (conservation), and that the
 * counters and the users hash agree with the reservation records.
 */
export async function auditActivity(redis: Redis, activityId: string): Promise<ActivityAudit> {
  const k = activityKeys(activityId);
  const [total, stock, reserved, paid] = await Promise.all([
    redis.hget(k.meta, "total"),
    redis.get(k.stock),
    redis.get(k.reserved),
    redis.get(k.paid),
  ]);
  // Every reservation of the activity: its id escaped for SCAN MATCH, any order id.
  const resKeys = await scanAll(
    redis,
    activityKeys(activityId.replace(/[*?[\]\\]/g, "\\$&")).reservation("*"),
  );
  const reservations: ActivityAudit["reservations"] = new Map();
  for (const key of resKeys) {
    const h = await redis.hgetall(key);
    reservations.set(key.slice(key.lastIndexOf(":") + 1), {
      user: h.user ?? "",
      qty: Number(h.qty),
      status: h.status ?? "",
      requestId: h.request_id ?? "",
    });
  }
  const entries = await redis.xrange(k.orders, "-", "+");
  const streamOrderIds = entries.map(
    ([, fields]) => fields[fields.indexOf(ORDER_INTENT_FIELDS.orderId) + 1]!,
  );
  const users = new Map(Object.entries(await redis.hgetall(k.users)).map(([u, n]) => [u, +n]));
  const requests = new Map(Object.entries(await redis.hgetall(k.req)));

  const a = {
    total: Number(total),
    stock: Number(stock),
    reserved: Number(reserved),
    paid: Number(paid),
  };
  const violations: string[] = [];
  if (a.stock + a.reserved + a.paid !== a.total)
    violations.push(`I5: ${a.stock} + ${a.reserved} + ${a.paid} != ${a.total}`);
  if (a.stock < 0) violations.push(`I1: stock is ${a.stock}`);
  let heldReserved = 0;
  let heldPaid = 0;
  const heldByUser = new Map<string, number>();
  const requestIds = new Set<string>();
  for (const [oid, r] of reservations) {
    if (r.status === "RESERVED") heldReserved += r.qty;
    if (r.status === "PAID") heldPaid += r.qty;
    if (r.status !== "RELEASED") heldByUser.set(r.user, (heldByUser.get(r.user) ?? 0) + r.qty);
    if (requestIds.has(r.requestId)) violations.push(`I4: request ${r.requestId} reserved twice`);
    requestIds.add(r.requestId);
    if (!requests.get(r.requestId)?.startsWith(`R|${oid}|`))
      violations.push(`I4: request ${r.requestId} does not remember ${oid}`);
  }
  if (heldReserved + heldPaid > a.total)
    violations.push(`I1: ${heldReserved + heldPaid} units held of ${a.total}`);
  if (heldReserved !== a.reserved)
    violations.push(`reserved counter ${a.reserved} != ${heldReserved} in RESERVED records`);
  if (heldPaid !== a.paid) violations.push(`paid counter ${a.paid} != ${heldPaid} in PAID records`);
  for (const [user, n] of heldByUser)
    if ((users.get(user) ?? 0) !== n)
      violations.push(`users[${user}] = ${users.get(user)} != ${n}`);
  for (const [user, n] of users)
    if (!heldByUser.has(user)) violations.push(`users[${user}] = ${n} without a reservation`);
  const streamSet = new Set(streamOrderIds);
  if (streamSet.size !== streamOrderIds.length)
    violations.push("an order id is twice on the stream");
  if (streamOrderIds.length !== reservations.size)
    violations.push(
      `${streamOrderIds.length} stream entries for ${reservations.size} reservations`,
    );
  for (const oid of reservations.keys())
    if (!streamSet.has(oid)) violations.push(`reservation ${oid} has no stream entry`);
  return { ...a, reservations, streamOrderIds, users, requests, violations };
}
