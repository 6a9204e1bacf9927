/**
 * Products and activities: validation, the lifecycle DRAFT → PUBLISHED → ENDED
 * in MySQL, and pushing every change of a published activity to core and etcd
 * (publisher.ts). Handlers in routes.ts only check the caller and map protos.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Updateable } from "kysely";
import type { Activity } from "../../gen/seckill/common/v1/common_pb.ts";
import { newId } from "../../shared/src/data-plane/ids.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { catalogChanges, publishedUpdates, publishes } from "./metrics.ts";
import { decodeToken, encodeToken } from "./paging.ts";
import type { CoreClient, Propagator } from "./publisher.ts";
import type { ActivitiesTable, StoredStatus } from "./schema.ts";
import type { CatalogStore } from "./store.ts";
import {
  type ActivityFields,
  checkActivity,
  currency as checkCurrency,
  priceCents as checkPrice,
  checkProduct,
  reason as checkReason,
  invalid,
  LIMITS,
  type PaymentTimeoutBounds,
  type ProductInput,
  pageSize,
  requireId,
} from "./validation.ts";
import {
  type ActivityRow,
  activityMessage,
  derivedStatus,
  needsStock,
  type ProductRow,
} from "./views.ts";

export interface CatalogDeps {
  store: CatalogStore;
  propagator: Propagator;
  core: CoreClient;
  log: Logger;
  paymentTimeout: PaymentTimeoutBounds;
  now?: () => number;
}

/** The editable fields of an activity as CreateActivity / UpdateActivity carry them. */
export interface ActivityInput {
  title?: string;
  description?: string;
  priceCents?: bigint;
  currency?: string;
  totalStock?: bigint;
  perUserLimit?: number;
  startMs?: number;
  endMs?: number;
  paymentTimeoutSeconds?: number;
}

const notFound = (what: string, id: string) =>
  new ConnectError(`${what} ${JSON.stringify(id)} not found`, Code.NotFound);
const precondition = (message: string) => new ConnectError(message, Code.FailedPrecondition);

/** Status lookups of LIVE / SOLD_OUT ask core for the stock, but never wait long for it. */
const STOCK_LOOKUP_TIMEOUT_MS = 1000;

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

export class Catalog {
  private readonly now: () => number;

  constructor(private readonly deps: CatalogDeps) {
    this.now = deps.now ?? Date.now;
  }

  // ------------------------------------------------------------------ products

  async createProduct(input: ProductInput, by: string): Promise<ProductRow> {
    const fields = checkProduct(input);
    const now = new Date(this.now());
    const id = newId(now.getTime());
    await this.deps.store.insertProduct({
      id,
      name: fields.name,
      description: fields.description,
      image_url: fields.imageUrl,
      price_cents: fields.priceCents,
      currency: fields.currency,
      created_at: now,
      updated_at: now,
      created_by: by,
    });
    catalogChanges.inc({ entity: "product", op: "create", status: "" });
    this.deps.log.info({ productId: id, by, name: fields.name }, "product created");
    return (await this.deps.store.product(id))!;
  }

  /**
   * Changes the fields that are set. Published activities carry the product's
   * name and picture, so they get a new revision pushed to core and etcd.
   */
  async updateProduct(id: string, patch: Partial<ProductInput>, by: string): Promise<ProductRow> {
    requireId("product_id", id);
    const { store } = this.deps;
    const { product, activities } = await store.transaction(async (trx) => {
      const row = await store.product(id, trx, true);
      if (!row) throw notFound("product", id);
      const merged = checkProduct({
        name: patch.name ?? row.name,
        description: patch.description ?? row.description,
        imageUrl: patch.imageUrl ?? row.image_url,
        priceCents: patch.priceCents ?? BigInt(row.price_cents),
        currency: patch.currency ?? row.currency,
      });
      const changed =
        merged.name !== row.name ||
        merged.description !== row.description ||
        merged.imageUrl !== row.image_url ||
        merged.priceCents !== row.price_cents ||
        merged.currency !== row.currency;
      const shownChanged = merged.name !== row.name || merged.imageUrl !== row.image_url;
      if (changed) {
        await store.updateProduct(trx, id, {
          name: merged.name,
          description: merged.description,
          image_url: merged.imageUrl,
          price_cents: merged.priceCents,
          currency: merged.currency,
          updated_at: new Date(this.now()),
        });
      }
      const published = await store.publishedOfProduct(trx, id, shownChanged);
      if (shownChanged) {
        for (const a of published) {
          await store.updateActivity(trx, a.id, {
            revision: a.revision + 1,
            updated_at: new Date(this.now()),
            updated_by: by,
          });
        }
      }
      return {
        product: (await store.product(id, trx))!,
        activities: shownChanged ? await store.publishedOfProduct(trx, id) : published,
      };
    });
    catalogChanges.inc({ entity: "product", op: "update", status: "" });
    this.deps.log.info(
      { productId: id, by, publishedActivities: activities.length },
      "product updated",
    );
    // Pushed even when nothing changed, so a retry after a failed push completes it.
    const failures: ConnectError[] = [];
    for (const a of activities) {
      try {
        await this.deps.propagator.propagate(a, "rpc");
        publishedUpdates.inc({ kind: "product", outcome: "pushed" });
      } catch (err) {
        publishedUpdates.inc({ kind: "product", outcome: "failed" });
        failures.push(err as ConnectError);
      }
    }
    if (failures[0]) throw failures[0];
    return product;
  }

  async getProduct(id: string): Promise<ProductRow> {
    requireId("product_id", id);
    const row = await this.deps.store.product(id);
    if (!row) throw notFound("product", id);
    return row;
  }

  async listProducts(size: number, token: string): Promise<Page<ProductRow>> {
    const limit = pageSize(size);
    const [before] = decodeToken("products", token, 1) ?? [];
    const rows = await this.deps.store.listProducts(limit + 1, before);
    return page(rows, limit, (r) => encodeToken("products", [r.id]));
  }

  // ---------------------------------------------------------------- activities

  async createActivity(
    productId: string,
    input: Required<ActivityInput>,
    by: string,
  ): Promise<Activity> {
    requireId("product_id", productId);
    const product = await this.deps.store.product(productId);
    if (!product) throw notFound("product", productId);
    const fields = this.fields(input, product);
    const nowMs = this.now();
    if (fields.endMs <= nowMs)
      throw invalid(`end_time ${new Date(fields.endMs).toISOString()} is in the past`);
    const now = new Date(nowMs);
    const id = newId(nowMs);
    await this.deps.store.insertActivity({
      id,
      product_id: productId,
      title: fields.title,
      description: fields.description,
      price_cents: fields.priceCents,
      currency: fields.currency,
      total_stock: fields.totalStock,
      per_user_limit: fields.perUserLimit,
      max_per_user_limit: fields.perUserLimit,
      start_at: new Date(fields.startMs),
      end_at: new Date(fields.endMs),
      payment_timeout_seconds: fields.paymentTimeoutSeconds,
      status: "DRAFT",
      revision: 1,
      created_at: now,
      updated_at: now,
      published_at: null,
      warmed_at: null,
      ended_at: null,
      end_reason: null,
      created_by: by,
      updated_by: by,
    });
    catalogChanges.inc({ entity: "activity", op: "create", status: "DRAFT" });
    this.deps.log.info(
      { activityId: id, productId, by, totalStock: fields.totalStock },
      "activity created",
    );
    return activityMessage((await this.deps.store.activity(id))!);
  }

  /**
   * Changes the fields that are set. A draft changes freely; a published
   * activity keeps its total stock and price (core created the stock from them)
   * and gets a new revision pushed to core, then etcd; an ended one is final.
   */
  async updateActivity(id: string, input: ActivityInput, by: string): Promise<Activity> {
    requireId("activity_id", id);
    const { store } = this.deps;
    const { row, changed } = await store.transaction(async (trx) => {
      const row = await store.activity(id, trx, true);
      if (!row) throw notFound("activity", id);
      if (row.status === "ENDED")
        throw precondition(`activity ${id} has ended: it cannot change any more`);
      const product = (await store.product(row.product_id, trx))!;
      if (row.status !== "DRAFT") {
        if (input.totalStock !== undefined && Number(input.totalStock) !== row.total_stock)
          throw precondition(
            `total_stock can only change while the activity is a DRAFT (activity ${id} is ${row.status}: its stock is in Redis)`,
          );
        if (
          input.priceCents !== undefined &&
          (input.priceCents === 0n ? product.price_cents : Number(input.priceCents)) !==
            row.price_cents
        )
          throw precondition(
            `price_cents can only change while the activity is a DRAFT (activity ${id} is ${row.status})`,
          );
      }
      const fields = this.fields(
        {
          title: input.title ?? row.title,
          description: input.description ?? row.description,
          priceCents: input.priceCents ?? BigInt(row.price_cents),
          currency: input.currency ?? row.currency,
          totalStock: input.totalStock ?? BigInt(row.total_stock),
          perUserLimit: input.perUserLimit ?? row.per_user_limit,
          startMs: input.startMs ?? row.start_at.getTime(),
          endMs: input.endMs ?? row.end_at.getTime(),
          paymentTimeoutSeconds: input.paymentTimeoutSeconds ?? row.payment_timeout_seconds,
        },
        product,
      );
      if (
        row.status === "PUBLISHED" &&
        fields.endMs !== row.end_at.getTime() &&
        fields.endMs <= this.now()
      )
        throw invalid(
          `end_time ${new Date(fields.endMs).toISOString()} is in the past: use EndActivity to end a sale now`,
        );
      const patch: Updateable<ActivitiesTable> = {};
      if (fields.title !== row.title) patch.title = fields.title;
      if (fields.description !== row.description) patch.description = fields.description;
      if (fields.priceCents !== row.price_cents) patch.price_cents = fields.priceCents;
      if (fields.currency !== row.currency) patch.currency = fields.currency;
      if (fields.totalStock !== row.total_stock) patch.total_stock = fields.totalStock;
      if (fields.perUserLimit !== row.per_user_limit) {
        patch.per_user_limit = fields.perUserLimit;
        patch.max_per_user_limit =
          row.status === "PUBLISHED"
            ? Math.max(row.max_per_user_limit, fields.perUserLimit)
            : fields.perUserLimit;
      }
      if (fields.startMs !== row.start_at.getTime()) patch.start_at = new Date(fields.startMs);
      if (fields.endMs !== row.end_at.getTime()) patch.end_at = new Date(fields.endMs);
      if (fields.paymentTimeoutSeconds !== row.payment_timeout_seconds)
        patch.payment_timeout_seconds = fields.paymentTimeoutSeconds;
      const changed = Object.keys(patch);
      if (changed.length === 0) return { row, changed };
      await store.updateActivity(trx, id, {
        ...patch,
        revision: row.revision + 1,
        updated_at: new Date(this.now()),
        updated_by: by,
      });
      return { row: (await store.activity(id, trx))!, changed };
    });
    if (changed.length > 0) {
      catalogChanges.inc({ entity: "activity", op: "update", status: row.status });
      this.deps.log.info(
        { activityId: id, by, changed, revision: row.revision, status: row.status },
        "activity updated",
      );
    }
    if (row.status === "PUBLISHED") {
      // Pushed even when nothing changed, so a retry after a failed push completes it.
      try {
        await this.deps.propagator.propagate(row, "rpc");
        publishedUpdates.inc({ kind: "update", outcome: "pushed" });
      } catch (err) {
        publishedUpdates.inc({ kind: "update", outcome: "failed" });
        throw err;
      }
    }
    return this.withStatus(row);
  }

  async getActivity(id: string): Promise<Activity> {
    requireId("activity_id", id);
    const row = await this.deps.store.activity(id);
    if (!row) throw notFound("activity", id);
    return this.withStatus(row);
  }

  async listActivities(
    size: number,
    token: string,
    status: StoredStatus | undefined,
  ): Promise<Page<Activity>> {
    const limit = pageSize(size);
    const [before] = decodeToken("activities", token, 1) ?? [];
    const rows = await this.deps.store.listActivities(limit + 1, status, before);
    const { items, nextPageToken } = page(rows, limit, (r) => encodeToken("activities", [r.id]));
    return { items: await this.withStatuses(items), nextPageToken };
  }

  /**
   * DRAFT → PUBLISHED: MySQL (status, revision + 1), then core's WarmUp, then etcd.
   * Publishing a published activity pushes it again unchanged (a retry after a
   * failed push completes it).
   */
  async publish(id: string, by: string): Promise<Activity> {
    requireId("activity_id", id);
    const { store } = this.deps;
    const { row, first } = await store.transaction(async (trx) => {
      const row = await store.activity(id, trx, true);
      if (!row) throw notFound("activity", id);
      if (row.status === "ENDED")
        throw precondition(`activity ${id} has ended: it cannot be published`);
      if (row.status === "PUBLISHED") return { row, first: false };
      const nowMs = this.now();
      if (row.end_at.getTime() <= nowMs)
        throw precondition(
          `activity ${id} ended at ${row.end_at.toISOString()}: move end_time into the future before publishing`,
        );
      await store.updateActivity(trx, id, {
        status: "PUBLISHED",
        revision: row.revision + 1,
        max_per_user_limit: row.per_user_limit,
        published_at: new Date(nowMs),
        updated_at: new Date(nowMs),
        updated_by: by,
      });
      return { row: (await store.activity(id, trx))!, first: true };
    });
    if (first) {
      catalogChanges.inc({ entity: "activity", op: "publish", status: "PUBLISHED" });
      this.deps.log.info({ activityId: id, by, revision: row.revision }, "activity published");
    }
    try {
      await this.deps.propagator.propagate(row, "rpc");
    } catch (err) {
      publishes.inc({ outcome: "failed" });
      throw err;
    }
    publishes.inc({ outcome: first ? "published" : "republished" });
    return this.withStatus(row);
  }

  /**
   * Ends the sale now: status ENDED and end_time = now (kept after start_time),
   * revision + 1, pushed to core and etcd so buying stops everywhere. A draft
   * just becomes ENDED. Ending an ended activity pushes it again (idempotent).
   */
  async end(id: string, why: string, by: string): Promise<Activity> {
    requireId("activity_id", id);
    const endReason = checkReason("reason", why);
    const { store } = this.deps;
    const { row, first } = await store.transaction(async (trx) => {
      const row = await store.activity(id, trx, true);
      if (!row) throw notFound("activity", id);
      if (row.status === "ENDED") return { row, first: false };
      const nowMs = this.now();
      const startMs = row.start_at.getTime();
      const endMs = Math.max(startMs + 1, Math.min(row.end_at.getTime(), nowMs));
      await store.updateActivity(trx, id, {
        status: "ENDED",
        end_at: new Date(endMs),
        revision: row.revision + 1,
        ended_at: new Date(nowMs),
        end_reason: endReason,
        updated_at: new Date(nowMs),
        updated_by: by,
      });
      return { row: (await store.activity(id, trx))!, first: true };
    });
    if (first) {
      catalogChanges.inc({ entity: "activity", op: "end", status: "ENDED" });
      this.deps.log.info(
        {
          activityId: id,
          by,
          reason: endReason,
          revision: row.revision,
          wasPublished: !!row.published_at,
        },
        "activity ended",
      );
    }
    if (row.published_at) {
      try {
        await this.deps.propagator.propagate(row, "rpc");
        publishedUpdates.inc({ kind: "end", outcome: "pushed" });
      } catch (err) {
        publishedUpdates.inc({ kind: "end", outcome: "failed" });
        throw err;
      }
    }
    return this.withStatus(row);
  }

  // ------------------------------------------------------------------- helpers

  /** Defaults from the product (price 0, empty currency), then the whole-definition checks. */
  private fields(input: Required<ActivityInput>, product: ProductRow): ActivityFields {
    if (input.totalStock > BigInt(LIMITS.totalStockMax))
      throw invalid(`total_stock must be <= ${LIMITS.totalStockMax} (got ${input.totalStock})`);
    const price = checkPrice("price_cents", input.priceCents);
    const fields: ActivityFields = {
      title: input.title,
      description: input.description,
      priceCents: price === 0 ? product.price_cents : price,
      currency:
        input.currency.trim() === "" ? product.currency : checkCurrency("currency", input.currency),
      totalStock: Number(input.totalStock),
      perUserLimit: input.perUserLimit,
      startMs: input.startMs,
      endMs: input.endMs,
      paymentTimeoutSeconds: input.paymentTimeoutSeconds,
    };
    return checkActivity(fields, this.deps.paymentTimeout);
  }

  /** The activity with its derived status (asks core for the stock when it matters). */
  async withStatus(row: ActivityRow): Promise<Activity> {
    return (await this.withStatuses([row]))[0]!;
  }

  async withStatuses(rows: ActivityRow[]): Promise<Activity[]> {
    const nowMs = this.now();
    return Promise.all(
      rows.map(async (row) => {
        const remaining = needsStock(row, nowMs) ? await this.remaining(row.id) : undefined;
        return activityMessage(row, derivedStatus(row, nowMs, remaining));
      }),
    );
  }

  /** Core's remaining stock, or undefined when core cannot say quickly. */
  private async remaining(id: string): Promise<number | undefined> {
    try {
      const stock = await this.deps.core.getStock(
        { activityId: id },
        { timeoutMs: STOCK_LOOKUP_TIMEOUT_MS },
      );
      return Number(stock.remaining);
    } catch (err) {
      this.deps.log.debug({ activityId: id, err: String(err) }, "stock lookup for status failed");
      return undefined;
    }
  }
}

function page<T>(rows: T[], limit: number, token: (last: T) => string): Page<T> {
  const items = rows.slice(0, limit);
  return { items, nextPageToken: rows.length > limit ? token(items[items.length - 1]!) : "" };
}
