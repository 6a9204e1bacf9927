/**
 * The Redis layout of one activity (see the data-plane contract). Every key
 * starts with the hash tag `{act:<id>}`, so all of an activity's keys live in
 * one slot and each script runs unchanged on Redis Cluster.
 */

/** The hash-tagged prefix shared by every key of an activity. */
export const activityTag = (activityId: string) => `{act:${activityId}}`;

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
  /** STREAM order intents, consumed by order with the consumer group "order". */
  orders: string;
  /** PUB/SUB channel: published on every Release, so cores drop their sold-out flag. */
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
    restock: `${tag}:restock`,
    reservation: (orderId) => `${tag}:res:${orderId}`,
  };
}

/** The consumer group order reads the streams with. */
export const ORDER_CONSUMER_GROUP = "order";

/** The restock channel is core's; the flags it clears live in every instance (shared sold-out.ts). */
export { activityOfRestockChannel, RESTOCK_PATTERN } from "../../shared/src/sale/sold-out.ts";
