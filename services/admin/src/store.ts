/** Products and activities in MySQL: the queries, nothing else. */
import type { Insertable, Kysely, Transaction, Updateable } from "kysely";
import type { ActivitiesTable, AdminDatabase, ProductsTable, StoredStatus } from "./schema.ts";
import type { ActivityRow, ProductRow } from "./views.ts";

export type Db = Kysely<AdminDatabase> | Transaction<AdminDatabase>;

export class CatalogStore {
  constructor(readonly db: Kysely<AdminDatabase>) {}

  transaction<T>(run: (trx: Transaction<AdminDatabase>) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(run);
  }

  // --- products

  async insertProduct(row: Insertable<ProductsTable>): Promise<void> {
    await this.db.insertInto("products").values(row).execute();
  }

  product(id: string, db: Db = this.db, lock = false): Promise<ProductRow | undefined> {
    let q = db.selectFrom("products").selectAll().where("id", "=", id);
    if (lock) q = q.forUpdate();
    return q.executeTakeFirst();
  }

  async updateProduct(db: Db, id: string, patch: Updateable<ProductsTable>): Promise<void> {
    await db.updateTable("products").set(patch).where("id", "=", id).execute();
  }

  /** Newest first; `beforeId` is the last id of the previous page. */
  listProducts(limit: number, beforeId?: string): Promise<ProductRow[]> {
    let q = this.db.selectFrom("products").selectAll().orderBy("id", "desc").limit(limit);
    if (beforeId) q = q.where("id", "<", beforeId);
    return q.execute();
  }

  // --- activities

  private activities(db: Db) {
    return db
      .selectFrom("activities as a")
      .innerJoin("products as p", "p.id", "a.product_id")
      .selectAll("a")
      .select(["p.name as product_name", "p.image_url as product_image_url"]);
  }

  /**
   * One activity with its product's name and picture. `lock` takes the
   * activity's row (only that row: product changes lock the product first, then
   * its activities, so the two never wait on each other in opposite order).
   */
  async activity(id: string, db: Db = this.db, lock = false): Promise<ActivityRow | undefined> {
    if (lock) {
      const locked = await db
        .selectFrom("activities")
        .select("id")
        .where("id", "=", id)
        .forUpdate()
        .executeTakeFirst();
      if (!locked) return undefined;
    }
    return this.activities(db).where("a.id", "=", id).executeTakeFirst();
  }

  /** Newest first, optionally one stored status. */
  listActivities(limit: number, status?: StoredStatus, beforeId?: string): Promise<ActivityRow[]> {
    let q = this.activities(this.db).orderBy("a.id", "desc").limit(limit);
    if (status) q = q.where("a.status", "=", status);
    if (beforeId) q = q.where("a.id", "<", beforeId);
    return q.execute();
  }

  /** Every activity that was published (PUBLISHED, or ENDED after publishing): what etcd must hold. */
  publishedActivities(): Promise<ActivityRow[]> {
    return this.activities(this.db)
      .where("a.status", "in", ["PUBLISHED", "ENDED"])
      .where("a.published_at", "is not", null)
      .orderBy("a.id")
      .execute();
  }

  /** Published activities of a product (their denormalized product fields follow the product). */
  async publishedOfProduct(db: Db, productId: string, lock = false): Promise<ActivityRow[]> {
    if (lock)
      await db
        .selectFrom("activities")
        .select("id")
        .where("product_id", "=", productId)
        .where("published_at", "is not", null)
        .forUpdate()
        .execute();
    return this.activities(db)
      .where("a.product_id", "=", productId)
      .where("a.status", "in", ["PUBLISHED", "ENDED"])
      .where("a.published_at", "is not", null)
      .orderBy("a.id")
      .execute();
  }

  async insertActivity(row: Insertable<ActivitiesTable>): Promise<void> {
    await this.db.insertInto("activities").values(row).execute();
  }

  async updateActivity(db: Db, id: string, patch: Updateable<ActivitiesTable>): Promise<void> {
    await db.updateTable("activities").set(patch).where("id", "=", id).execute();
  }

  /** Records that core holds the stock: from now on admin never asks core to create it again. */
  async markWarmed(id: string, at: Date): Promise<void> {
    await this.db
      .updateTable("activities")
      .set({ warmed_at: at })
      .where("id", "=", id)
      .where("warmed_at", "is", null)
      .execute();
  }
}
