/** OrderService handlers: identity from the gateway's trusted headers, then the domain (orders.ts). */
import { OrderService } from "../../gen/seckill/order/v1/order_pb.ts";
import type { Routes } from "../../shared/src/transport/grpc-server.ts";
import { requireCaller } from "../../shared/src/transport/identity.ts";
import type { Orders } from "./orders.ts";

export function orderRoutes(orders: Orders, opts: { watchPollMs: number }): Routes {
  return (router) =>
    router.service(OrderService, {
      async getOrder(req, ctx) {
        const caller = requireCaller(ctx);
        return { order: await orders.get(req.orderId, caller, req.activityId) };
      },
      async listMyOrders(req, ctx) {
        const caller = requireCaller(ctx);
        return orders.list(caller, req);
      },
      async *watchOrder(req, ctx) {
        const caller = requireCaller(ctx);
        const states = orders.watch(
          req.orderId,
          caller,
          req.activityId,
          ctx.signal,
          opts.watchPollMs,
        );
        for await (const order of states) yield { order };
      },
      async pay(req, ctx) {
        const caller = requireCaller(ctx);
        return { order: await orders.pay(req.orderId, req.paymentId, caller) };
      },
      async cancel(req, ctx) {
        const caller = requireCaller(ctx);
        return { order: await orders.cancel(req.orderId, req.reason, caller) };
      },
    });
}
