/** AdminService handlers: the admin check, then proto mapping around the domain modules. */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { AdminService, BlacklistKind } from "../../gen/seckill/admin/v1/admin_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { Routes } from "../../shared/src/transport/grpc-server.ts";
import { requireAdmin } from "../../shared/src/transport/identity.ts";
import type { Blacklist, BlacklistRow } from "./blacklist.ts";
import type { Catalog } from "./catalog.ts";
import type { Reconciler } from "./reconcile.ts";
import type { BlacklistKindName } from "./schema.ts";
import { activityStats, type StatsDeps } from "./stats.ts";
import { invalid, timeMs } from "./validation.ts";
import { productMessage, statusFilter } from "./views.ts";

export interface AdminDeps {
  catalog: Catalog;
  blacklist: Blacklist;
  reconciler: Reconciler;
  stats: StatsDeps;
  log: Logger;
}

export function adminRoutes(deps: AdminDeps): Routes {
  return (router) => router.service(AdminService, adminImpl(deps));
}

function kindName(kind: BlacklistKind, allowAll: true): BlacklistKindName | undefined;
function kindName(kind: BlacklistKind, allowAll?: false): BlacklistKindName;
function kindName(kind: BlacklistKind, allowAll = false): BlacklistKindName | undefined {
  if (kind === BlacklistKind.USER) return "user";
  if (kind === BlacklistKind.IP) return "ip";
  if (kind === BlacklistKind.UNSPECIFIED && allowAll) return undefined;
  throw invalid("kind must be BLACKLIST_KIND_USER or BLACKLIST_KIND_IP");
}

const entryMessage = (row: BlacklistRow) => ({
  kind: row.kind === "user" ? BlacklistKind.USER : BlacklistKind.IP,
  value: row.value,
  reason: row.reason,
  createdAt: timestampFromMs(row.created_at.getTime()),
  expiresAt: row.expires_at ? timestampFromMs(row.expires_at.getTime()) : undefined,
});

/** Every RPC: UNAUTHENTICATED without identity, PERMISSION_DENIED unless the caller is an admin. */
const admin = (ctx: HandlerContext) => requireAdmin(ctx).userId;

export function adminImpl(deps: AdminDeps): ServiceImpl<typeof AdminService> {
  const { catalog, blacklist, reconciler } = deps;
  return {
    async createProduct(req, ctx) {
      const by = admin(ctx);
      return { product: productMessage(await catalog.createProduct(req, by)) };
    },

    async updateProduct(req, ctx) {
      const by = admin(ctx);
      const product = await catalog.updateProduct(
        req.productId,
        {
          name: req.name,
          description: req.description,
          imageUrl: req.imageUrl,
          priceCents: req.priceCents,
          currency: req.currency,
        },
        by,
      );
      return { product: productMessage(product) };
    },

    async getProduct(req, ctx) {
      admin(ctx);
      return { product: productMessage(await catalog.getProduct(req.productId)) };
    },

    async listProducts(req, ctx) {
      admin(ctx);
      const page = await catalog.listProducts(req.pageSize, req.pageToken);
      return { products: page.items.map(productMessage), nextPageToken: page.nextPageToken };
    },

    async createActivity(req, ctx) {
      const by = admin(ctx);
      const activity = await catalog.createActivity(
        req.productId,
        {
          title: req.title,
          description: req.description,
          priceCents: req.priceCents,
          currency: req.currency,
          totalStock: req.totalStock,
          perUserLimit: req.perUserLimit,
          startMs: timeMs("start_time", req.startTime),
          endMs: timeMs("end_time", req.endTime),
          paymentTimeoutSeconds: req.paymentTimeoutSeconds,
        },
        by,
      );
      return { activity };
    },

    async updateActivity(req, ctx) {
      const by = admin(ctx);
      const activity = await catalog.updateActivity(
        req.activityId,
        {
          title: req.title,
          description: req.description,
          perUserLimit: req.perUserLimit,
          startMs: req.startTime ? timeMs("start_time", req.startTime) : undefined,
          endMs: req.endTime ? timeMs("end_time", req.endTime) : undefined,
          totalStock: req.totalStock,
          priceCents: req.priceCents,
          paymentTimeoutSeconds: req.paymentTimeoutSeconds,
        },
        by,
      );
      return { activity };
    },

    async getActivity(req, ctx) {
      admin(ctx);
      return { activity: await catalog.getActivity(req.activityId) };
    },

    async listActivities(req, ctx) {
      admin(ctx);
      const status = statusFilter(req.status);
      if (status === "derived")
        throw invalid(
          "status filters on a stored status: DRAFT, PUBLISHED or ENDED (LIVE and SOLD_OUT are derived)",
        );
      const page = await catalog.listActivities(req.pageSize, req.pageToken, status);
      return { activities: page.items, nextPageToken: page.nextPageToken };
    },

    async publishActivity(req, ctx) {
      const by = admin(ctx);
      return { activity: await catalog.publish(req.activityId, by) };
    },

    async endActivity(req, ctx) {
      const by = admin(ctx);
      return { activity: await catalog.end(req.activityId, req.reason, by) };
    },

    async addBlacklistEntry(req, ctx) {
      const by = admin(ctx);
      const row = await blacklist.add(
        kindName(req.kind),
        req.value,
        req.reason,
        req.expiresAt ? timeMs("expires_at", req.expiresAt) : undefined,
        by,
      );
      return { entry: entryMessage(row) };
    },

    async removeBlacklistEntry(req, ctx) {
      const by = admin(ctx);
      return { removed: await blacklist.remove(kindName(req.kind), req.value, by) };
    },

    async listBlacklist(req, ctx) {
      admin(ctx);
      const page = await blacklist.list(kindName(req.kind, true), req.pageSize, req.pageToken);
      return { entries: page.items.map(entryMessage), nextPageToken: page.nextPageToken };
    },

    async getStats(req, ctx) {
      admin(ctx);
      return activityStats(deps.stats, req.activityId);
    },

    async reconcile(req, ctx) {
      const by = admin(ctx);
      const started = Date.now();
      const { mismatches, checked } = await reconciler.reconcile(req.activityId);
      deps.log.info(
        {
          by,
          activityId: req.activityId || "(all)",
          checked,
          mismatches: mismatches.length,
          tookMs: Date.now() - started,
        },
        "reconcile done",
      );
      return {
        mismatches,
        checkedActivities: checked,
        ok: mismatches.length === 0,
        asOf: timestampFromMs(Date.now()),
      };
    },
  };
}
