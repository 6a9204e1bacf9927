/**
 * Every Redis key and pub/sub channel name of the system (the data-plane
 * contract; docs/data-plane.md lists each with its type, writers, readers and
 * TTL). Nothing else builds a key: services call these builders.
 *
 * An activity's keys all start with the hash tag `{act:<id>}`, so they live in
 * one slot and each script runs unchanged on Redis Cluster. Activity ids
 * follow the id grammar (ids.ts): no braces, so the tag is always intact.
 */

const TAG_OPEN = "{act:";

/** The hash-tagged prefix shared by every key of an activity. */
export const activityTag = (activityId: string) => `${TAG_OPEN}${activityId}}`;

/** seckill-core's keys of one activity (plus the order-intent stream's dead letters). */
export interface ActivityKeys {
  /** HASH total, start_ms, end_ms, limit, pay_timeout_s, revision, price_cents, currency, product_id, status. */
  meta: string;
  /** STRING units still for sale. */
  stock: string;
  /** STRING units reserved and not paid yet. */
  reserved: string;
  /** STRING units paid. */
  paid: string;
  /** HASH user id → units held (reserved + paid). */
  users: string;
  /** HASH request id → the original answer ("R|<order_id>|<deadline_ms>"). */
  req: string;
  /** STREAM order intents (order-intent.ts), read by order with ORDER_CONSUMER_GROUP. */
  orders: string;
  /** STREAM intents order could not turn into a row, with the reason (order-intent.ts). */
  deadLetters: string;
  /** PUB/SUB channel: published on every Release, so sold-out flags drop. */
  restock: string;
  /** HASH user, qty, status, deadline_ms, request_id, created_ms of one reservation. */
  reservation(orderId: string): string;
}

export function activityKeys(activityId: string): ActivityKeys {
  const tag = activityTag(activityId);
  return {
    meta: `${tag}:meta`,
    stock: `${tag}:stock`,
    reserved: `${tag}:reserved`,
    paid: `${tag}:paid`,
    users: `${tag}:users`,
    req: `${tag}:req`,
    orders: `${tag}:orders`,
    deadLetters: `${tag}:orders:dead`,
    restock: restockChannel(activityId),
    reservation: (orderId) => `${tag}:res:${orderId}`,
  };
}

// ---------------------------------------------------------------------------
// Restock channel (seckill-core publishes, every sold-out flag holder listens)

/** The restock channel of one activity (inside the activity's hash tag). */
export function restockChannel(activityId: string): string {
  return `${activityTag(activityId)}:restock`;
}

/** What follows the activity id in a restock channel: "}:restock". */
const RESTOCK_TAIL = restockChannel("").slice(TAG_OPEN.length);

/** PSUBSCRIBE pattern matching every activity's restock channel. */
export const RESTOCK_PATTERN = `${TAG_OPEN}*${RESTOCK_TAIL}`;

/** The activity id of a restock channel name, or undefined if it is not one. */
export function activityOfRestockChannel(channel: string): string | undefined {
  if (!channel.startsWith(TAG_OPEN) || !channel.endsWith(RESTOCK_TAIL)) return undefined;
  if (channel.length < TAG_OPEN.length + RESTOCK_TAIL.length) return undefined;
  return channel.slice(TAG_OPEN.length, channel.length - RESTOCK_TAIL.length);
}

// ---------------------------------------------------------------------------
// seckill-app: buy-token claims and per-user rate limits, in the activity's slot

/** STRING: the request id that first used a buy token (its nonce); PX the token's remaining life. */
export const buyTokenClaimKey = (activityId: string, nonce: string) =>
  `${activityTag(activityId)}:tok:${nonce}`;

/** STRING: a user's Buy attempts in the current fixed window; PX the window. */
export const buyRateKey = (activityId: string, userId: string) =>
  `${activityTag(activityId)}:rl:buy:${userId}`;

/** STRING: a user's GetBuyToken calls in the current fixed window; PX the window. */
export const buyTokenRateKey = (activityId: string, userId: string) =>
  `${activityTag(activityId)}:rl:tok:${userId}`;

// ---------------------------------------------------------------------------
// order: live order status

/** PUB/SUB channel of one order's status changes (message: the new status name). */
export const orderChannel = (orderId: string) => `order:${orderId}`;

// ---------------------------------------------------------------------------
// Blacklist mirror (admin writes, every gateway and seckill-app reads)

export type BlacklistKind = "user" | "ip";

/** HASH member → JSON {reason, expiresAtMs}, one per kind. */
export const blacklistKey = (kind: BlacklistKind) => `seckill:blacklist:${kind}`;

/** PUB/SUB channel: one message ("<kind>:<member>") per blacklist change. */
export const BLACKLIST_CHANNEL = "seckill:blacklist:changed";

// ---------------------------------------------------------------------------
// auth: failed-login counters

/** Default prefix of the login counters (LoginLimits.prefix may change it, e.g. in tests). */
export const LOGIN_RATE_PREFIX = "auth:login";

/** STRING: login attempts counted for a username in the current window; PX the window. */
export const loginUserKey = (username: string, prefix = LOGIN_RATE_PREFIX) =>
  `${prefix}:user:${username}`;

/** STRING: login attempts counted for a client IP in the current window; PX the window. */
export const loginIpKey = (ip: string, prefix = LOGIN_RATE_PREFIX) => `${prefix}:ip:${ip}`;
