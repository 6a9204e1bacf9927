/**
 * The monolith peer of `npm run bench`: what a user would pick instead of the
 * mesh. ONE connect-node process (the edge's stack: http2 + connectNodeAdapter)
 * serving SeckillAppService.GetBuyToken and Buy: Buy checks the buy token with
 * seckill-app's BuyTokens and runs core's reservation Lua script through
 * StockStore, one item per pipeline. No gateway, no mesh hop, no JWT, no
 * per-user rate limit, no nonce claim: the caller's Bearer value is its user id.
 *
 * Run as its own process by bench/run.ts: `node --import tsx bench/monolith.ts`
 * with REDIS_URL and BUY_TOKEN_SECRET in the env; it tells its port over IPC and
 * exits on "stop" or when the parent goes away (so --cpu-prof can write).
 */
import { createServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { SeckillAppService } from "../services/gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../services/gen/seckill/common/v1/common_pb.ts";
import { BuyTokens } from "../services/seckill-app/src/buy-token.ts";
import { StockStore } from "../services/seckill-core/src/store.ts";

const redisUrl = process.env.REDIS_URL;
const secret = process.env.BUY_TOKEN_SECRET;
if (!redisUrl || !secret) throw new Error("monolith: REDIS_URL and BUY_TOKEN_SECRET are required");

const redis = new Redis(redisUrl, { enableAutoPipelining: false });
const store = new StockStore(redis);
const tokens = new BuyTokens(secret, 60);
const soldOut = new Set<string>();

function caller(ctx: HandlerContext): string {
  const auth = ctx.requestHeader.get("authorization") ?? "";
  const userId = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  if (!userId) throw new ConnectError("missing bearer", Code.Unauthenticated);
  return userId;
}

const server = createServer(
  connectNodeAdapter({
    routes: (router) =>
      router.service(SeckillAppService, {
        getBuyToken(req, ctx) {
          return { buyToken: tokens.issue(caller(ctx), req.activityId).token };
        },
        async buy(req, ctx) {
          const userId = caller(ctx);
          const check = tokens.verify(req.buyToken, userId, req.activityId);
          if (!check.ok) return { result: BuyResult.TOKEN_INVALID, message: check.reason };
          const [r] = await store.reserveBatch(
            [
              {
                activityId: req.activityId,
                userId,
                quantity: req.quantity,
                requestId: req.requestId,
              },
            ],
            (id) => soldOut.has(id),
          );
          if (!r) throw new ConnectError("no answer from the store", Code.Internal);
          if (r.soldOut) soldOut.add(req.activityId);
          return {
            result: r.result,
            orderId: r.orderId,
            reservationId: r.orderId,
            soldOut: r.soldOut,
          };
        },
      }),
  }),
);
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));

const stop = () => {
  redis.disconnect();
  process.exit(0);
};
process.on("message", (m) => {
  if (m === "stop") stop();
});
process.on("disconnect", stop);
process.send?.({ port: (server.address() as AddressInfo).port });
