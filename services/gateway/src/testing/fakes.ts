/**
 * Test doubles for the gateway's unit tests: signing keys and tokens like
 * auth's, and in-memory upstream services (createRouterTransport) that record
 * what reached them.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  createRouterTransport,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import { createJwtVerifier } from "../../../auth/src/client.ts";
import { generateSigningKey, keyRing, TokenIssuer } from "../../../auth/src/testing.ts";
import { AdminService, GetStatsResponseSchema } from "../../../gen/seckill/admin/v1/admin_pb.ts";
import {
  type BuyRequest,
  BuyResponseSchema,
  SeckillAppService,
} from "../../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../../gen/seckill/auth/v1/auth_pb.ts";
import { BuyResult, OrderStatus, Role } from "../../../gen/seckill/common/v1/common_pb.ts";
import { GatewayService } from "../../../gen/seckill/gateway/v1/gateway_pb.ts";
import { OrderService } from "../../../gen/seckill/order/v1/order_pb.ts";
import { SoldOutFlags } from "../../../shared/src/sale/sold-out.ts";
import { callerOf, requireCaller } from "../../../shared/src/transport/identity.ts";
import { EdgeLimiter, type LimitSettings } from "../limits.ts";
import { soldOutMetrics } from "../metrics.ts";
import { gatewayRoutes } from "../routes.ts";
import { RecentKeys } from "../sold-out.ts";

export const JWT = { issuer: "seckill-auth", audience: "seckill" };
const settings = { ...JWT, accessTtlSeconds: 900, refreshTtlSeconds: 3600 };

/** auth's key and a second key with the same kid (a forger's). */
export const signing = generateSigningKey("k1");
const forgerKey = generateSigningKey("k1");
const issuer = new TokenIssuer(keyRing([signing.key]), settings);
const forger = new TokenIssuer(keyRing([forgerKey.key]), settings);

export const tokens = {
  user: (id = "user-1") => issuer.access({ id, role: "user" }).then((t) => t.token),
  admin: (id = "admin-1") => issuer.access({ id, role: "admin" }).then((t) => t.token),
  expired: (id = "user-1") =>
    issuer.access({ id, role: "user" }, Date.now() - 3_600_000).then((t) => t.token),
  forged: (id = "admin-1") => forger.access({ id, role: "admin" }).then((t) => t.token),
  refresh: (id = "user-1") => issuer.refresh(id).then((t) => t.token),
};

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** What an upstream saw of one call. */
export interface Seen {
  service: string;
  method: string;
  headers: Headers;
  timeoutMs: number | undefined;
  message: unknown;
}

export interface Upstreams {
  seen: Seen[];
  /** The next Buy answers (then "reserved" answers). */
  buyAnswers: MessageInitShape<typeof BuyResponseSchema>[];
  /** Set to make Buy fail. */
  buyError: ConnectError | undefined;
  /** Aborted signals of WatchOrder streams, for cancellation checks. */
  watchSignals: AbortSignal[];
  /** Delay (ms) of each WatchOrder message. */
  watchIntervalMs: number;
  transport(upstream: string): Transport;
  callsTo(method: string): Seen[];
}

/** In-memory auth, seckill-app, order and admin that record every call. */
export function fakeUpstreams(): Upstreams {
  const state: Upstreams = {
    seen: [],
    buyAnswers: [],
    buyError: undefined,
    watchSignals: [],
    watchIntervalMs: 5,
    transport: (name) => {
      const t = transports[name];
      if (!t) throw new ConnectError(`${name}: no instance is registered`, Code.Unavailable);
      return t;
    },
    callsTo: (method) => state.seen.filter((s) => s.method === method),
  };
  const record = (ctx: HandlerContext, message: unknown) =>
    state.seen.push({
      service: ctx.service.typeName,
      method: ctx.method.name,
      headers: new Headers(ctx.requestHeader),
      timeoutMs: ctx.timeoutMs(),
      message,
    });
  // Anything not implemented below answers UNIMPLEMENTED after being recorded.
  const recordAll = (router: ConnectRouter, service: typeof AdminService | typeof AuthService) => {
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      (router.rpc as (m: unknown, impl: unknown) => void)(
        method,
        (req: unknown, ctx: HandlerContext) => {
          record(ctx, req);
          if (method.name === "GetStats") {
            const caller = requireCaller(ctx);
            if (caller.role !== "admin")
              throw new ConnectError("admin only", Code.PermissionDenied);
            return create(GetStatsResponseSchema, { total: 10n, remaining: 7n });
          }
          if (method.name === "GetPublicKeys") return { keys: [signing.key.publicJwk] };
          if (method.name === "GetMe") {
            const caller = requireCaller(ctx);
            return {
              user: {
                id: caller.userId,
                username: caller.userId,
                role: caller.role === "admin" ? Role.ADMIN : Role.USER,
              },
            };
          }
          throw new ConnectError(`${method.name} not faked`, Code.Unimplemented);
        },
      );
    }
  };
  const transports: Record<string, Transport> = {
    auth: createRouterTransport((router) => recordAll(router, AuthService)),
    admin: createRouterTransport((router) => recordAll(router, AdminService)),
    "seckill-app": createRouterTransport((router) =>
      router.service(SeckillAppService, {
        listActivities(req, ctx) {
          record(ctx, req);
          return { activities: [] };
        },
        getActivity(req, ctx) {
          record(ctx, req);
          throw new ConnectError(`activity ${req.activityId} not found`, Code.NotFound);
        },
        getServerTime(req, ctx) {
          record(ctx, req);
          return { unixMillis: BigInt(Date.now()) };
        },
        getBuyToken(req, ctx) {
          record(ctx, req);
          requireCaller(ctx);
          return { buyToken: "token" };
        },
        buy(req: BuyRequest, ctx) {
          record(ctx, req);
          requireCaller(ctx);
          if (state.buyError) throw state.buyError;
          const answer = state.buyAnswers.shift() ?? {
            result: BuyResult.RESERVED,
            orderId: `order-${req.requestId}`,
          };
          return create(BuyResponseSchema, answer);
        },
      }),
    ),
    order: createRouterTransport((router) =>
      router.service(OrderService, {
        getOrder(req, ctx) {
          record(ctx, req);
          const caller = callerOf(ctx);
          return { order: { id: req.orderId, userId: caller?.userId ?? "" } };
        },
        async *watchOrder(req, ctx) {
          record(ctx, req);
          state.watchSignals.push(ctx.signal);
          const statuses = [
            OrderStatus.CREATING,
            OrderStatus.PENDING_PAYMENT,
            OrderStatus.PAID,
          ] as const;
          for (const status of statuses) {
            yield { order: { id: req.orderId, status } };
            await new Promise((r) => setTimeout(r, state.watchIntervalMs));
          }
        },
      }),
    ),
  };
  return state;
}

export interface EdgeUnderTest {
  upstreams: Upstreams;
  flags: SoldOutFlags;
  clock: { now: number };
  limiter: EdgeLimiter;
  shutdown: AbortController;
  clients: {
    auth: ReturnType<typeof createClient<typeof AuthService>>;
    app: ReturnType<typeof createClient<typeof SeckillAppService>>;
    order: ReturnType<typeof createClient<typeof OrderService>>;
    admin: ReturnType<typeof createClient<typeof AdminService>>;
    gateway: ReturnType<typeof createClient<typeof GatewayService>>;
  };
  close(): void;
}

const noLimits: LimitSettings = {
  ip: { ratePerSecond: 0, burst: 1, maxKeys: 1000 },
  global: { ratePerSecond: 0, burst: 1 },
  user: { ratePerSecond: 0, burst: 1, maxKeys: 1000 },
};

/** The gateway's routes in memory, over fake upstreams, with a clock the test moves. */
export function edgeUnderTest(
  opts: {
    limits?: Partial<LimitSettings>;
    blockedIps?: string[];
    soldOutTtlMs?: number;
    trustedProxyHops?: number;
  } = {},
): EdgeUnderTest {
  const upstreams = fakeUpstreams();
  const clock = { now: Date.now() };
  const now = () => clock.now;
  const flags = new SoldOutFlags(opts.soldOutTtlMs ?? 1000, now, soldOutMetrics);
  const limiter = new EdgeLimiter({ ...noLimits, ...opts.limits }, now);
  const blocked = new Set(opts.blockedIps ?? []);
  const shutdown = new AbortController();
  const authClient = createClient(AuthService, upstreams.transport("auth"));
  const verifier = createJwtVerifier({
    ...JWT,
    fetchKeys: async () => (await authClient.getPublicKeys({})).keys,
  });
  const edge = createRouterTransport(
    gatewayRoutes({
      transport: (name) => upstreams.transport(name),
      gate: {
        verifier,
        limiter,
        blacklist: { isBlocked: (_kind, ip) => ip !== undefined && blocked.has(ip) },
        trustedProxyHops: opts.trustedProxyHops ?? 1,
      },
      unaryTimeoutMs: 10_000,
      streamTimeoutMs: 3_000,
      streamShutdownSignal: shutdown.signal,
      flags,
      recent: new RecentKeys(1000, 60_000, now),
      instanceId: "gateway-test",
      version: "test",
      now,
    }),
  );
  return {
    upstreams,
    flags,
    clock,
    limiter,
    shutdown,
    clients: {
      auth: createClient(AuthService, edge),
      app: createClient(SeckillAppService, edge),
      order: createClient(OrderService, edge),
      admin: createClient(AdminService, edge),
      gateway: createClient(GatewayService, edge),
    },
    close: () => limiter.close(),
  };
}
