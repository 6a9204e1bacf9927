/**
 * A stand-in for auth and seckill-app that answers at once, for the edge
 * benchmark: `SERVICE_NAME=seckill-app BENCH_JWT_KEY=<pem> … node --import tsx fake-upstream.ts`.
 */

import { parsePrivateKeys } from "../../auth/src/testing.ts";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { baseConfigSchema, loadConfig } from "../../shared/src/runtime/config.ts";
import { runService } from "../../shared/src/runtime/server.ts";
import { requireCaller } from "../../shared/src/transport/identity.ts";

const keys = parsePrivateKeys(process.env.BENCH_JWT_KEY ?? "");

await runService(() => ({
  name: process.env.SERVICE_NAME ?? "seckill-app",
  config: loadConfig(baseConfigSchema),
  setup: () => (router) => {
    router.service(AuthService, { getPublicKeys: () => ({ keys: keys.map((k) => k.publicJwk) }) });
    router.service(SeckillAppService, {
      getServerTime: () => ({ unixMillis: BigInt(Date.now()) }),
      buy(req, ctx) {
        requireCaller(ctx);
        if (req.activityId === "sold") return { result: BuyResult.SOLD_OUT, soldOut: true };
        return { result: BuyResult.RESERVED, orderId: req.requestId };
      },
    });
  },
}));
