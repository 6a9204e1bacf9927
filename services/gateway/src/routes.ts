/**
 * The public API of the edge: which services are forwarded where, who may
 * call each method, and the edge's own GatewayService.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { AdminService } from "../../gen/seckill/admin/v1/admin_pb.ts";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import {
  GatewayService,
  GetEdgeStatusResponseSchema,
} from "../../gen/seckill/gateway/v1/gateway_pb.ts";
import { OrderService } from "../../gen/seckill/order/v1/order_pb.ts";
import type { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import {
  type ForwardedService,
  type ForwarderOptions,
  forward,
  registerForwarded,
  resolvePolicy,
} from "./forwarder.ts";
import { checkIds } from "./id-checks.ts";
import { createEdgeGate } from "./policy.ts";
import { buyHooks, type RecentKeys } from "./sold-out.ts";

/** Upstream names in etcd. */
export const UPSTREAMS = {
  auth: "auth",
  app: "seckill-app",
  order: "order",
  admin: "admin",
} as const;

const admin = { access: "admin", ipBlacklist: false } as const;

/**
 * The forwarded services. Admin methods skip the IP blacklist so that a bad
 * entry cannot lock the admins out of removing it (they are authenticated
 * admins, and admin checks the role again).
 */
export function publicServices(soldOut: {
  flags: SoldOutFlags;
  recent: RecentKeys;
}): ForwardedService[] {
  return [
    forward({
      service: AuthService,
      upstream: UPSTREAMS.auth,
      policy: {
        register: "public",
        login: "public",
        refresh: "public",
        getPublicKeys: "public",
        getMe: "user",
        provisionUsers: admin,
      },
    }),
    forward({
      service: SeckillAppService,
      upstream: UPSTREAMS.app,
      policy: {
        listActivities: "public",
        getActivity: "public",
        getServerTime: "public",
        getBuyToken: "user",
        buy: "user",
      },
      hooks: {
        getBuyToken: checkIds(SeckillAppService.method.getBuyToken, ["activityId"]),
        buy: checkIds(
          SeckillAppService.method.buy,
          ["activityId", "requestId"],
          buyHooks(soldOut.flags, soldOut.recent),
        ),
      },
    }),
    forward({
      service: OrderService,
      upstream: UPSTREAMS.order,
      policy: {
        getOrder: "user",
        listMyOrders: "user",
        watchOrder: "user",
        pay: "user",
        cancel: "user",
      },
    }),
    forward({
      service: AdminService,
      upstream: UPSTREAMS.admin,
      policy: {
        createProduct: admin,
        updateProduct: admin,
        getProduct: admin,
        listProducts: admin,
        createActivity: admin,
        updateActivity: admin,
        getActivity: admin,
        listActivities: admin,
        publishActivity: admin,
        endActivity: admin,
        addBlacklistEntry: admin,
        removeBlacklistEntry: admin,
        listBlacklist: admin,
        getStats: admin,
        reconcile: admin,
      },
    }),
  ];
}

export interface GatewayRoutesOptions extends ForwarderOptions {
  flags: SoldOutFlags;
  recent: RecentKeys;
  instanceId: string;
  version: string;
  now?: () => number;
}

/** Every route of the edge: the forwarded services and GatewayService. */
export function gatewayRoutes(opts: GatewayRoutesOptions): (router: ConnectRouter) => void {
  const now = opts.now ?? Date.now;
  return (router) => {
    registerForwarded(router, publicServices(opts), opts);
    router.service(
      GatewayService,
      {
        getEdgeStatus() {
          const ms = now();
          return create(GetEdgeStatusResponseSchema, {
            serverTime: timestampFromMs(ms),
            unixMillis: BigInt(ms),
            version: opts.version,
            soldOutActivityIds: opts.flags.list().sort(),
            instanceId: opts.instanceId,
          });
        },
      },
      { requestGate: createEdgeGate(resolvePolicy("public"), opts.gate) },
    );
  };
}
