/**
 * Test helpers that write Redis exactly as the data-plane contract says
 * seckill-core does, so the order tests do not depend on core's code: the
 * activity counters, reservation hashes and order-intent stream entries.
 */
import { newId } from "../../../shared/src/data-plane/ids.ts";
import { activityTag } from "../../../shared/src/data-plane/keys.ts";
import {
  encodeOrderIntent,
  type OrderIntent,
  orderIntentStream,
} from "../../../shared/src/data-plane/order-intent.ts";
import type { Redis } from "../../../shared/src/stores/redis.ts";

export const tag = activityTag;

let sequence = 0;

/** An intent with unique ids; deadline 15 minutes ahead unless overridden. */
export function makeIntent(activityId: string, o: Partial<OrderIntent> = {}): OrderIntent {
  const now = Date.now();
  sequence++;
  return {
    orderId: newId(now),
    activityId,
    userId: `user-${sequence}`,
    quantity: 1,
    unitPriceCents: 1999,
    currency: "USD",
    productId: "prod-1",
    deadlineMs: now + 15 * 60_000,
    requestId: `req-${sequence}-${Math.random().toString(36).slice(2)}`,
    createdMs: now,
    ...o,
  };
}

/** XADDs the intents to the activity's stream (pipelined), as core's reserve script would. */
export async function appendIntents(redis: Redis, intents: readonly OrderIntent[]): Promise<void> {
  for (let i = 0; i < intents.length; i += 1000) {
    const pipeline = redis.pipeline();
    for (const intent of intents.slice(i, i + 1000))
      pipeline.xadd(orderIntentStream(intent.activityId), "*", ...encodeOrderIntent(intent));
    const results = (await pipeline.exec()) ?? [];
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
  }
}

/** Writes raw fields (for malformed entries); returns the entry id. */
export async function appendRaw(redis: Redis, activityId: string, fields: string[]) {
  return (await redis.xadd(orderIntentStream(activityId), "*", ...fields)) as string;
}

export interface WarmOptions {
  total: number;
  limit?: number;
  payTimeoutSeconds?: number;
  priceCents?: number;
}

/** The activity's meta and counters as after core's first warm-up. */
export async function warm(redis: Redis, activityId: string, o: WarmOptions): Promise<void> {
  const t = tag(activityId);
  const now = Date.now();
  await redis
    .multi()
    .hset(`${t}:meta`, {
      total: o.total,
      start_ms: now - 3_600_000,
      end_ms: now + 3_600_000,
      limit: o.limit ?? 5,
      pay_timeout_s: o.payTimeoutSeconds ?? 900,
      revision: 1,
      price_cents: o.priceCents ?? 1999,
      currency: "USD",
      product_id: "prod-1",
      status: "PUBLISHED",
    })
    .set(`${t}:stock`, o.total)
    .set(`${t}:reserved`, 0)
    .set(`${t}:paid`, 0)
    .exec();
}

/**
 * What core's reserve script does for a successful reservation: stock -= q,
 * reserved += q, users[uid] += q, the reservation hash, and (unless
 * `append` is false) the order intent on the stream, atomically.
 */
const RESERVE = `
local qty = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[1]) or '0') < qty then return 0 end
redis.call('DECRBY', KEYS[1], qty)
redis.call('INCRBY', KEYS[2], qty)
redis.call('HINCRBY', KEYS[3], ARGV[2], qty)
redis.call('HSET', KEYS[4], 'user', ARGV[2], 'qty', ARGV[3], 'status', 'RESERVED',
  'deadline_ms', ARGV[4], 'request_id', ARGV[5], 'created_ms', ARGV[6])
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[5], '*', unpack(ARGV, 8))
end
return 1
`;

export async function reserve(
  redis: Redis,
  intent: OrderIntent,
  opts: { append?: boolean } = {},
): Promise<void> {
  const t = tag(intent.activityId);
  const ok = await redis.eval(
    RESERVE,
    5,
    `${t}:stock`,
    `${t}:reserved`,
    `${t}:users`,
    `${t}:res:${intent.orderId}`,
    orderIntentStream(intent.activityId),
    intent.orderId,
    intent.userId,
    String(intent.quantity),
    String(intent.deadlineMs),
    intent.requestId,
    String(intent.createdMs),
    opts.append === false ? "0" : "1",
    ...encodeOrderIntent(intent),
  );
  if (ok !== 1) throw new Error(`no stock left for ${intent.orderId}`);
}

export interface Counters {
  total: number;
  stock: number;
  reserved: number;
  paid: number;
}

export async function counters(redis: Redis, activityId: string): Promise<Counters> {
  const t = tag(activityId);
  const [total, stock, reserved, paid] = await Promise.all([
    redis.hget(`${t}:meta`, "total"),
    redis.get(`${t}:stock`),
    redis.get(`${t}:reserved`),
    redis.get(`${t}:paid`),
  ]);
  return {
    total: Number(total),
    stock: Number(stock),
    reserved: Number(reserved),
    paid: Number(paid),
  };
}

export async function reservationStatus(redis: Redis, activityId: string, orderId: string) {
  return redis.hget(`${tag(activityId)}:res:${orderId}`, "status");
}
