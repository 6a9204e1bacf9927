/**
 * A small in-process SeckillCoreService for order's tests, served like any
 * service (shared server + grpc adapter, registered in etcd as
 * "seckill-core"). It records every call and applies the contract's Redis
 * effects for Release / ConfirmPayment, idempotent by reservation id.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ReservationStatus, SeckillCoreService } from "../../../gen/seckill/core/v1/core_pb.ts";
import { baseConfigSchema, loadConfig } from "../../../shared/src/runtime/config.ts";
import { type RunningService, startService } from "../../../shared/src/runtime/server.ts";
import { createRedis } from "../../../shared/src/stores/redis.ts";
import { tag } from "./contract.ts";

const RELEASE = `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st ~= 'RESERVED' then return 0 end
local qty = tonumber(redis.call('HGET', KEYS[1], 'qty'))
local user = redis.call('HGET', KEYS[1], 'user')
redis.call('HSET', KEYS[1], 'status', 'RELEASED')
redis.call('INCRBY', KEYS[2], qty)
redis.call('DECRBY', KEYS[3], qty)
redis.call('HINCRBY', KEYS[4], user, -qty)
redis.call('PUBLISH', KEYS[5], 'restock')
return 1
`;

const CONFIRM = `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'PAID' then return 1 end
if st ~= 'RESERVED' then return 0 end
local qty = tonumber(redis.call('HGET', KEYS[1], 'qty'))
redis.call('HSET', KEYS[1], 'status', 'PAID')
redis.call('DECRBY', KEYS[2], qty)
redis.call('INCRBY', KEYS[3], qty)
return 1
`;

const statusOf: Record<string, ReservationStatus> = {
  RESERVED: ReservationStatus.RESERVED,
  PAID: ReservationStatus.PAID,
  RELEASED: ReservationStatus.RELEASED,
};

export interface FakeCore {
  /** Release calls per reservation id, and how many of them returned stock. */
  releaseCalls: Map<string, number>;
  releasedNow: Map<string, number>;
  confirmCalls: Map<string, number>;
  /** While > 0, Release and ConfirmPayment fail UNAVAILABLE (and count down). */
  failNext: number;
  service: RunningService;
  stop(): Promise<void>;
}

const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

export async function startFakeCore(opts: {
  etcdEndpoints: string[];
  redisUrl: string;
  instanceId?: string;
}): Promise<FakeCore> {
  const config = loadConfig(baseConfigSchema, {
    ETCD_ENDPOINTS: opts.etcdEndpoints.join(","),
    INSTANCE_ID: opts.instanceId ?? "fake-core",
    LOG_LEVEL: "warn",
    SHUTDOWN_DELAY_MS: "0",
    REGISTRATION_TTL_SECONDS: "5",
  });
  const fake = {
    releaseCalls: new Map<string, number>(),
    releasedNow: new Map<string, number>(),
    confirmCalls: new Map<string, number>(),
    failNext: 0,
  } as FakeCore;
  const maybeFail = () => {
    if (fake.failNext > 0) {
      fake.failNext--;
      throw new ConnectError("fake core: failing as asked", Code.Unavailable);
    }
  };
  fake.service = await startService({
    name: "seckill-core",
    config,
    setup(ctx) {
      const r = createRedis(opts.redisUrl, ctx.log);
      ctx.cleanup.add(() => r.quit());
      return (router) =>
        router.service(SeckillCoreService, {
          async release(req) {
            bump(fake.releaseCalls, req.reservationId);
            maybeFail();
            const t = tag(req.activityId);
            const code = (await r.eval(
              RELEASE,
              5,
              `${t}:res:${req.reservationId}`,
              `${t}:stock`,
              `${t}:reserved`,
              `${t}:users`,
              `${t}:restock`,
            )) as number;
            if (code === -1) throw new ConnectError("no such reservation", Code.NotFound);
            if (code === 1) bump(fake.releasedNow, req.reservationId);
            return { released: code === 1, remaining: BigInt((await r.get(`${t}:stock`)) ?? 0) };
          },
          async confirmPayment(req) {
            bump(fake.confirmCalls, req.reservationId);
            maybeFail();
            const t = tag(req.activityId);
            const code = (await r.eval(
              CONFIRM,
              3,
              `${t}:res:${req.reservationId}`,
              `${t}:reserved`,
              `${t}:paid`,
            )) as number;
            if (code === -1) throw new ConnectError("no such reservation", Code.NotFound);
            return { confirmed: code === 1 };
          },
          async getReservation(req) {
            const id = req.reservationId || req.orderId;
            if (!id) throw new ConnectError("reservation_id or order_id", Code.InvalidArgument);
            const h = await r.hgetall(`${tag(req.activityId)}:res:${id}`);
            if (!h.user) throw new ConnectError("no such reservation", Code.NotFound);
            return {
              reservation: {
                reservationId: id,
                orderId: id,
                activityId: req.activityId,
                userId: h.user,
                quantity: Number(h.qty),
                status: statusOf[h.status ?? ""] ?? ReservationStatus.UNSPECIFIED,
                paymentDeadline: timestampFromMs(Number(h.deadline_ms)),
                createdAt: timestampFromMs(Number(h.created_ms)),
                requestId: h.request_id ?? "",
              },
            };
          },
        });
    },
  });
  fake.stop = () => fake.service.shutdown("test done");
  return fake;
}
