/** Test data shared by the services' tests. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Activity,
  ActivitySchema,
  ActivityStatus,
} from "../../../gen/seckill/common/v1/common_pb.ts";
import { newId } from "../data-plane/ids.ts";
import type { OrderIntent } from "../data-plane/order-intent.ts";

const HOUR = 3_600_000;

export interface ActivityOverrides {
  id?: string;
  title?: string;
  totalStock?: number;
  perUserLimit?: number;
  startMs?: number;
  endMs?: number;
  revision?: number;
  status?: ActivityStatus;
  paymentTimeoutSeconds?: number;
}

/**
 * The proto Activity admin would publish: "act-1", 10 units, 2 per user,
 * 19.99 USD, payment within 900 s, PUBLISHED at revision 1, its window open
 * from an hour ago to an hour from now; anything overridden.
 */
export function activityFixture(o: ActivityOverrides = {}): Activity {
  const now = Date.now();
  return create(ActivitySchema, {
    id: o.id ?? "act-1",
    productId: "prod-1",
    title: o.title ?? "Test sale",
    priceCents: 1999n,
    currency: "USD",
    totalStock: BigInt(o.totalStock ?? 10),
    perUserLimit: o.perUserLimit ?? 2,
    startTime: timestampFromMs(o.startMs ?? now - HOUR),
    endTime: timestampFromMs(o.endMs ?? now + HOUR),
    paymentTimeoutSeconds: o.paymentTimeoutSeconds ?? 900,
    status: o.status ?? ActivityStatus.PUBLISHED,
    revision: BigInt(o.revision ?? 1),
    productName: "Test product",
  });
}

/** A valid order intent of activity "act-1" (fixed ids and times), for codec and consumer tests. */
export function orderIntentFixture(): OrderIntent {
  return {
    orderId: newId(1_700_000_000_000),
    activityId: "act-1",
    userId: "u-1",
    quantity: 2,
    unitPriceCents: 1999,
    currency: "USD",
    productId: "prod-1",
    deadlineMs: 1_700_000_900_000,
    requestId: "r-1",
    createdMs: 1_700_000_000_000,
  };
}

/** Stream entry fields (name, value, …) with the value of field `name` replaced. */
export const withField = (fields: readonly string[], name: string, value: string): string[] =>
  fields.map((v, i) => (i % 2 === 1 && fields[i - 1] === name ? value : v));
