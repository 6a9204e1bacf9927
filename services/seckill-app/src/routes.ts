/** SeckillAppService: thin handlers over the activity view and the sale logic. */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import type { Activity } from "../../gen/seckill/common/v1/common_pb.ts";
import type { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import type { Routes } from "../../shared/src/transport/grpc-server.ts";
import { checkBodyUserId, requireCaller } from "../../shared/src/transport/identity.ts";
import type { ActivityView } from "./activity-view.ts";
import type { RemainingStock } from "./remaining.ts";
import type { Sale } from "./sale.ts";

export interface AppDeps {
  view: ActivityView;
  flags: SoldOutFlags;
  sale: Sale;
  remaining: RemainingStock;
}

export function appRoutes(deps: AppDeps): Routes {
  return (router) => router.service(SeckillAppService, appImpl(deps));
}

export function appImpl({
  view,
  flags,
  sale,
  remaining,
}: AppDeps): ServiceImpl<typeof SeckillAppService> {
  return {
    listActivities() {
      const now = Date.now();
      return { activities: view.list(now) as Activity[], serverTime: timestampFromMs(now) };
    },

    async getActivity(req) {
      const now = Date.now();
      const activity = req.activityId ? view.get(req.activityId, now) : undefined;
      if (!activity) {
        if (!req.activityId)
          throw new ConnectError("activity_id is required", Code.InvalidArgument);
        throw new ConnectError(`no published activity ${req.activityId}`, Code.NotFound);
      }
      return {
        activity,
        serverTime: timestampFromMs(now),
        soldOut: flags.has(req.activityId, now),
        remaining: await remaining.get(req.activityId),
      };
    },

    getServerTime() {
      const now = Date.now();
      return { now: timestampFromMs(now), unixMillis: BigInt(now) };
    },

    getBuyToken(req, ctx) {
      const caller = requireCaller(ctx);
      checkBodyUserId(req.userId, caller);
      return sale.issueToken(req.activityId, caller);
    },

    buy(req, ctx) {
      const caller = requireCaller(ctx);
      checkBodyUserId(req.userId, caller);
      return sale.buy(req, caller);
    },
  };
}
