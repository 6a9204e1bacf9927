/** Rows as protos, and the lifecycle status readers see (LIVE and SOLD_OUT are derived). */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Selectable } from "kysely";
import {
  type Activity,
  ActivitySchema,
  ActivityStatus,
  type Product,
  ProductSchema,
} from "../../gen/seckill/common/v1/common_pb.ts";
import type { ActivitiesTable, ProductsTable, StoredStatus } from "./schema.ts";

export type ProductRow = Selectable<ProductsTable>;
/** An activity with its product's name and picture (denormalized into the proto). */
export type ActivityRow = Selectable<ActivitiesTable> & {
  product_name: string;
  product_image_url: string;
};

const stored: Record<StoredStatus, ActivityStatus> = {
  DRAFT: ActivityStatus.DRAFT,
  PUBLISHED: ActivityStatus.PUBLISHED,
  ENDED: ActivityStatus.ENDED,
};

export const storedStatus = (s: StoredStatus) => stored[s];

/** The stored status a list filter names, or undefined for "all"; LIVE / SOLD_OUT are not stored. */
export function statusFilter(s: ActivityStatus): StoredStatus | undefined | "derived" {
  switch (s) {
    case ActivityStatus.UNSPECIFIED:
      return undefined;
    case ActivityStatus.DRAFT:
      return "DRAFT";
    case ActivityStatus.PUBLISHED:
      return "PUBLISHED";
    case ActivityStatus.ENDED:
      return "ENDED";
    default:
      return "derived";
  }
}

export function productMessage(row: ProductRow): Product {
  return create(ProductSchema, {
    id: row.id,
    name: row.name,
    description: row.description,
    imageUrl: row.image_url,
    priceCents: BigInt(row.price_cents),
    currency: row.currency,
    createdAt: timestampFromMs(row.created_at.getTime()),
    updatedAt: timestampFromMs(row.updated_at.getTime()),
  });
}

/**
 * The activity as stored: this exact message (stored status, never a derived
 * one) is what goes to etcd and to core's WarmUp.
 */
export function activityMessage(row: ActivityRow, status = storedStatus(row.status)): Activity {
  return create(ActivitySchema, {
    id: row.id,
    productId: row.product_id,
    title: row.title,
    description: row.description,
    priceCents: BigInt(row.price_cents),
    currency: row.currency,
    totalStock: BigInt(row.total_stock),
    perUserLimit: row.per_user_limit,
    startTime: timestampFromMs(row.start_at.getTime()),
    endTime: timestampFromMs(row.end_at.getTime()),
    paymentTimeoutSeconds: row.payment_timeout_seconds,
    status,
    revision: BigInt(row.revision),
    productName: row.product_name,
    productImageUrl: row.product_image_url,
    createdAt: timestampFromMs(row.created_at.getTime()),
    updatedAt: timestampFromMs(row.updated_at.getTime()),
  });
}

/** Whether answering needs the stock to tell LIVE from SOLD_OUT. */
export function needsStock(row: Pick<ActivityRow, "status" | "start_at">, nowMs: number): boolean {
  return row.status === "PUBLISHED" && nowMs >= row.start_at.getTime();
}

/**
 * The status a reader sees: DRAFT and ENDED as stored; a published activity is
 * PUBLISHED before its window, SOLD_OUT once no stock is left (inside or after
 * the window), LIVE inside the window, ENDED after it. `remaining` undefined
 * means unknown (core unreachable): then stock is not considered.
 */
export function derivedStatus(
  row: Pick<ActivityRow, "status" | "start_at" | "end_at">,
  nowMs: number,
  remaining: number | undefined,
): ActivityStatus {
  if (row.status !== "PUBLISHED") return storedStatus(row.status);
  if (nowMs < row.start_at.getTime()) return ActivityStatus.PUBLISHED;
  if (remaining === 0) return ActivityStatus.SOLD_OUT;
  if (nowMs >= row.end_at.getTime()) return ActivityStatus.ENDED;
  return ActivityStatus.LIVE;
}
