/**
 * The seckill-core order's tests run against: the real service
 * (services/seckill-core as its own process, behind an in-process front that
 * counts its Release / ConfirmPayment calls and can fail them), or the small
 * fake of fake-core.ts. The fake and the front register in etcd as
 * "seckill-core", so order reaches them through its mesh; the real process
 * registers in an etcd of its own, where order's mesh does not look.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { BuyResult } from "../../../gen/seckill/common/v1/common_pb.ts";
import {
  type ReleaseRequest,
  type ReleaseResponse,
  SeckillCoreService,
} from "../../../gen/seckill/core/v1/core_pb.ts";
import type { Mesh } from "../../../shared/src/mesh/mesh.ts";
import { startEtcd } from "../../../shared/src/stack/index.ts";
import type { Redis } from "../../../shared/src/stores/redis.ts";
import {
  type InProcessService,
  type ProcessService,
  serviceEnv,
  startAsProcess,
  startFront,
} from "../../../shared/src/testing/index.ts";
import { reserve as contractReserve, warm as contractWarm, makeIntent } from "./contract.ts";
import { startFakeCore } from "./fake-core.ts";
import { type ActivityOptions, activityDefinition } from "./harness.ts";

export type CoreKind = "real" | "fake";

export interface Reserved {
  orderId: string;
  userId: string;
  quantity: number;
  deadlineMs: number;
}

export interface CoreUnderTest {
  kind: CoreKind;
  /** Release calls per reservation id, and how many of them returned stock. */
  releaseCalls: Map<string, number>;
  releasedNow: Map<string, number>;
  confirmCalls: Map<string, number>;
  /** While > 0, Release and ConfirmPayment fail UNAVAILABLE (counting down). */
  failNext: number;
  /** Loads the activity's stock into core (not into etcd: order does not consume it yet). */
  warm(activityId: string, o: ActivityOptions): Promise<void>;
  /**
   * Reserves one order per item. The fake takes `deadlineMs` as given; the
   * real core sets now + payment_timeout_seconds.
   */
  reserve(
    activityId: string,
    items: { userId: string; quantity?: number; deadlineMs?: number }[],
  ): Promise<Reserved[]>;
  stop(): Promise<void>;
}

const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

export interface CoreDeps {
  etcdEndpoints: string[];
  redisUrl: string;
  redis: Redis;
  mesh: Mesh;
}

export async function startCore(kind: CoreKind, deps: CoreDeps): Promise<CoreUnderTest> {
  return kind === "real" ? startRealCore(deps) : startFake(deps);
}

async function startFake(deps: CoreDeps): Promise<CoreUnderTest> {
  const fake = await startFakeCore({ etcdEndpoints: deps.etcdEndpoints, redisUrl: deps.redisUrl });
  return {
    kind: "fake",
    get releaseCalls() {
      return fake.releaseCalls;
    },
    get releasedNow() {
      return fake.releasedNow;
    },
    get confirmCalls() {
      return fake.confirmCalls;
    },
    get failNext() {
      return fake.failNext;
    },
    set failNext(n: number) {
      fake.failNext = n;
    },
    async warm(activityId, o) {
      await contractWarm(deps.redis, activityId, {
        total: o.totalStock ?? 1000,
        limit: o.perUserLimit,
        payTimeoutSeconds: o.paymentTimeoutSeconds,
      });
    },
    async reserve(activityId, items) {
      const out: Reserved[] = [];
      for (const item of items) {
        const intent = makeIntent(activityId, {
          userId: item.userId,
          quantity: item.quantity ?? 1,
          ...(item.deadlineMs ? { deadlineMs: item.deadlineMs } : {}),
        });
        await contractReserve(deps.redis, intent);
        out.push(intent);
      }
      return out;
    },
    stop: fake.stop,
  };
}

async function startRealCore(deps: CoreDeps): Promise<CoreUnderTest> {
  const state = {
    releaseCalls: new Map<string, number>(),
    releasedNow: new Map<string, number>(),
    confirmCalls: new Map<string, number>(),
    failNext: 0,
  };
  const counting: Interceptor = (next) => async (req) => {
    const name = req.method.name;
    if (req.stream || (name !== "Release" && name !== "ConfirmPayment")) return next(req);
    const id = (req.message as ReleaseRequest).reservationId;
    bump(name === "Release" ? state.releaseCalls : state.confirmCalls, id);
    if (state.failNext > 0) {
      state.failNext--;
      throw new ConnectError("test: core failing as asked", Code.Unavailable);
    }
    const res = await next(req);
    if (name === "Release" && !res.stream && (res.message as ReleaseResponse).released)
      bump(state.releasedNow, id);
    return res;
  };
  const env = { LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn", REGISTRATION_TTL_SECONDS: "5" };
  // The real core registers in an etcd of its own: order's mesh finds only the front.
  const hiddenEtcd = await startEtcd();
  let coreProcess: ProcessService | undefined;
  let front: InProcessService | undefined;
  const stop = async () => {
    await front?.stop();
    await coreProcess?.stop();
    await hiddenEtcd.stop();
  };
  try {
    coreProcess = await startAsProcess(
      "seckill-core",
      serviceEnv(
        { etcd: hiddenEtcd, redis: { url: deps.redisUrl } },
        { ...env, INSTANCE_ID: "core-under-test" },
      ),
    );
    front = await startFront({
      name: "seckill-core",
      service: SeckillCoreService,
      target: coreProcess,
      env: serviceEnv(
        { etcd: { endpoints: deps.etcdEndpoints } },
        { ...env, INSTANCE_ID: "core-under-test-front" },
      ),
      interceptors: [counting],
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const core = deps.mesh.client(SeckillCoreService, "seckill-core");
  await deps.mesh.ready("seckill-core");
  let requests = 0;
  return Object.assign(state, {
    kind: "real" as const,
    async warm(activityId: string, o: ActivityOptions) {
      await core.warmUp({ activity: activityDefinition(activityId, o) });
    },
    async reserve(
      activityId: string,
      items: { userId: string; quantity?: number; deadlineMs?: number }[],
    ) {
      const out: Reserved[] = [];
      for (let i = 0; i < items.length; i += 200) {
        const chunk = items.slice(i, i + 200);
        const res = await core.reserve({
          items: chunk.map((item) => ({
            activityId,
            userId: item.userId,
            quantity: item.quantity ?? 1,
            requestId: `test-req-${process.pid}-${++requests}`,
          })),
        });
        res.outcomes.forEach((o, j) => {
          if (o.result !== BuyResult.RESERVED)
            throw new Error(`reserve refused: ${BuyResult[o.result]} ${o.message}`);
          const item = chunk[j]!;
          out.push({
            orderId: o.orderId,
            userId: item.userId,
            quantity: item.quantity ?? 1,
            deadlineMs: o.paymentDeadline ? timestampMs(o.paymentDeadline) : 0,
          });
        });
      }
      return out;
    },
    stop,
  });
}
