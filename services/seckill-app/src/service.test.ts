/**
 * seckill-app over gRPC against real servers: redis-server and etcd from the
 * local stack, and a real seckill-core started as its own process (the test
 * kit's startAsProcess), found by the app through etcd like in production.
 * Activities are published the way admin does it: core WarmUp, then the
 * protobuf JSON at /seckill/activities/<id>.
 * Identity arrives in the gateway's trusted headers.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { type Activity, ActivityStatus, BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";
import { type RunningService, startService } from "../../shared/src/runtime/server.ts";
import { activityKey, encodeActivity } from "../../shared/src/sale/activities.ts";
import { putBlacklistEntry, removeBlacklistEntry } from "../../shared/src/sale/blacklist.ts";
import {
  type EtcdServer,
  type RedisServer,
  startEtcd,
  startRedis,
} from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import {
  activityFixture,
  auditActivity,
  codeIs,
  metricValue,
  type ProcessService,
  pollUntil,
  serviceEnv,
  startAsProcess,
} from "../../shared/src/testing/index.ts";
import { createGrpcTransport, type GrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import { identityHeaders } from "../../shared/src/transport/identity.ts";
import { BuyTokens } from "./buy-token.ts";
import { appConfigSchema } from "./config.ts";
import { appService } from "./service.ts";

const SECRET = "a-test-secret-of-more-than-32-bytes";
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

type AppClient = Client<typeof SeckillAppService>;

describe("seckill-app over gRPC, with a real seckill-core, Redis and etcd", () => {
  let redisServer: RedisServer;
  let etcdServer: EtcdServer;
  let redis: Redis;
  let etcd: Etcd3;
  let core: ProcessService;
  let coreClient: Client<typeof SeckillCoreService>;
  const services: RunningService[] = [];
  const transports: GrpcTransport[] = [];
  let app1: AppClient;
  let app2: AppClient;

  /** Reserve RPCs that reached core, as core counts them (its served-RPC metric). */
  const reserveCalls = () =>
    metricValue(core, "seckill_rpc_server_duration_seconds", {
      service: SeckillCoreService.typeName,
      method: "Reserve",
    });

  let n = 0;
  const user = () => `user-${++n}`;
  const rid = () => `rq-${++n}`;
  const actId = (name: string) => `${name}-${++n}`;
  const as = (userId: string, ip?: string) => ({
    headers: identityHeaders({ userId, role: "user", ip }),
  });

  const client = (port: number): AppClient => {
    const transport = createGrpcTransport({ address: `127.0.0.1:${port}` });
    transports.push(transport);
    return createClient(SeckillAppService, transport);
  };

  const startApp = async (id: string, extra: Record<string, string> = {}) => {
    const service = await startService(
      appService(
        loadConfig(appConfigSchema, {
          REDIS_URL: redisServer.url,
          ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
          INSTANCE_ID: id,
          LOG_LEVEL: "silent",
          SHUTDOWN_DELAY_MS: "0",
          BUY_TOKEN_SECRET: SECRET,
          // Generous by default; the tests of the limits start instances of their own.
          USER_RATE_LIMIT: "1000",
          TOKEN_RATE_LIMIT: "1000",
          // Only a restock message clears a flag within a test, unless a test says otherwise.
          SOLD_OUT_TTL_MS: "60000",
          ...extra,
        }),
      ),
    );
    services.push(service);
    return { service, client: client(service.port) };
  };

  /** As admin publishes: core WarmUp, then etcd; waits until every given app serves it. */
  const publish = async (a: Activity, apps: AppClient[] = [app1, app2]) => {
    await coreClient.warmUp({ activity: a });
    await etcd.put(activityKey(a.id)).value(encodeActivity(a));
    for (const app of apps)
      await pollUntil(
        async () => {
          const { activity: seen } = await app.getActivity({ activityId: a.id });
          return seen?.revision === a.revision;
        },
        {
          timeoutMs: 2000,
          message: `${a.id}@${a.revision} in the app's snapshot`,
          retryErrors: true,
        },
      );
  };

  const token = async (app: AppClient, userId: string, activityId: string, ip?: string) =>
    (await app.getBuyToken({ activityId }, as(userId, ip))).buyToken;

  const buy = (
    app: AppClient,
    userId: string,
    activityId: string,
    buyToken: string,
    requestId = rid(),
    quantity = 1,
    ip?: string,
  ) => app.buy({ activityId, quantity, buyToken, requestId }, as(userId, ip));

  before(async () => {
    [redisServer, etcdServer] = await Promise.all([startRedis(), startEtcd()]);
    redis = new Redis(redisServer.url);
    etcd = createEtcd(etcdServer.endpoints);
    core = await startAsProcess(
      "seckill-core",
      serviceEnv({ etcd: etcdServer, redis: redisServer }, { INSTANCE_ID: "core-1" }),
    );
    coreClient = core.client(SeckillCoreService);
    app1 = (await startApp("app-1")).client;
    app2 = (await startApp("app-2")).client;
  });

  after(async () => {
    for (const t of transports) t.close();
    for (const s of services.reverse()) await s.shutdown("test done");
    await core?.stop();
    redis?.disconnect();
    etcd?.close();
    await Promise.all([redisServer?.stop(), etcdServer?.stop()]);
  });

  it("serves the snapshot: list with derived statuses, one activity, the server clock", async () => {
    const now = Date.now();
    const live = activityFixture({ id: actId("live") });
    const soon = activityFixture({ id: actId("soon"), startMs: now + HOUR, endMs: now + 2 * HOUR });
    const over = activityFixture({
      id: actId("over"),
      startMs: now - 2 * HOUR,
      endMs: now - MINUTE,
    });
    const early = activityFixture({ id: actId("early"), status: ActivityStatus.ENDED });
    for (const a of [live, soon, over, early]) await publish(a);

    const { activities, serverTime } = await app1.listActivities({});
    assert.ok(serverTime);
    const statusOf = (id: string) => activities.find((a) => a.id === id)?.status;
    assert.equal(statusOf(live.id), ActivityStatus.LIVE);
    assert.equal(statusOf(soon.id), ActivityStatus.PUBLISHED);
    assert.equal(statusOf(over.id), ActivityStatus.ENDED);
    assert.equal(statusOf(early.id), ActivityStatus.ENDED);
    const starts = activities.map((a) => Number(a.startTime?.seconds));
    assert.deepEqual(
      starts,
      [...starts].sort((a, b) => a - b),
      "ordered by start time",
    );

    const one = await app2.getActivity({ activityId: live.id });
    assert.equal(one.activity?.title, "Test sale");
    assert.equal(one.activity?.status, ActivityStatus.LIVE);
    assert.equal(one.soldOut, false);
    await assert.rejects(
      app1.getActivity({ activityId: "no-such-activity" }),
      codeIs(Code.NotFound),
    );
    await assert.rejects(app1.getActivity({ activityId: "" }), codeIs(Code.InvalidArgument));

    const before = Date.now();
    const time = await app1.getServerTime({});
    const after = Date.now();
    const millis = Number(time.unixMillis);
    assert.ok(millis >= before && millis <= after, "the server clock");
    assert.equal(Number(time.now?.seconds), Math.floor(millis / 1000));
  });

  it("sells: token → buy → RESERVED with an order id; a retry gets the same order", async () => {
    const a = activityFixture({ id: actId("happy"), totalStock: 5, perUserLimit: 2 });
    await publish(a);
    const u = user();
    const issued = await app1.getBuyToken({ activityId: a.id, userId: u }, as(u));
    assert.ok(issued.expiresAt);
    const expiresMs = Number(issued.expiresAt.seconds) * 1000;
    assert.ok(expiresMs > Date.now() + 50_000 && expiresMs <= Date.now() + 61_000);

    const requestId = rid();
    const first = await app1.buy(
      { activityId: a.id, quantity: 2, buyToken: issued.buyToken, requestId, userId: u },
      as(u),
    );
    assert.equal(BuyResult[first.result], "RESERVED", first.message);
    assert.ok(first.orderId);
    assert.equal(first.reservationId, first.orderId);
    assert.ok(first.paymentDeadline);
    assert.equal(first.soldOut, false);
    const reservation = await coreClient.getReservation({
      activityId: a.id,
      orderId: first.orderId,
    });
    assert.equal(reservation.reservation?.userId, u);
    assert.equal(reservation.reservation?.quantity, 2);

    // The answer was lost: the client retries the same request on the other instance.
    const retry = await buy(app2, u, a.id, issued.buyToken, requestId, 2);
    assert.equal(BuyResult[retry.result], "RESERVED");
    assert.equal(retry.orderId, first.orderId, "the original order");
    const audit = await auditActivity(redis, a.id);
    assert.deepEqual(audit.violations, []);
    assert.equal(audit.reservations.size, 1, "reserved once");

    // Core's own refusals come through as typed results.
    const more = await buy(app2, u, a.id, await token(app2, u, a.id));
    assert.equal(BuyResult[more.result], "LIMIT_REACHED", more.message);
  });

  it("refuses every buy token that is not this user's fresh, unused one for this activity", async () => {
    const a = activityFixture({ id: actId("tok"), totalStock: 10, perUserLimit: 1 });
    const b = activityFixture({ id: actId("tok-other"), totalStock: 10, perUserLimit: 1 });
    await publish(a);
    await publish(b);
    const [alice, bob] = [user(), user()];
    const aliceToken = await token(app1, alice, a.id);
    const reasons: string[] = [];
    const refused = async (p: Promise<{ result: BuyResult; message: string }>, what: string) => {
      const r = await p;
      assert.equal(BuyResult[r.result], "TOKEN_INVALID", `${what}: ${r.message}`);
      reasons.push(`${what}: ${r.message}`);
    };

    await refused(buy(app1, bob, a.id, aliceToken), "another user's token");
    await refused(buy(app1, alice, b.id, aliceToken), "another activity's token");
    await refused(buy(app1, alice, a.id, ""), "no token");
    await refused(buy(app1, alice, a.id, "x".repeat(44)), "garbage");
    const tampered = Buffer.from(aliceToken, "base64url");
    tampered[tampered.length - 1]! ^= 0x40;
    await refused(buy(app1, alice, a.id, tampered.toString("base64url")), "a tampered token");
    const forger = new BuyTokens("not the secret, but just as long!!!", 60);
    await refused(buy(app1, alice, a.id, forger.issue(alice, a.id).token), "a forged token");
    const expired = new BuyTokens(SECRET, 5).issue(alice, a.id, Date.now() - 10 * MINUTE);
    await refused(buy(app1, alice, a.id, expired.token), "an expired token");

    // The real one works once; another request with it is a reuse, on any instance.
    const first = await buy(app1, alice, a.id, aliceToken);
    assert.equal(BuyResult[first.result], "RESERVED", first.message);
    await refused(buy(app2, alice, a.id, aliceToken), "a used token, another request id");

    const audit = await auditActivity(redis, a.id);
    assert.equal(audit.reservations.size, 1, "only the genuine buy reserved");
    assert.deepEqual([...audit.users.keys()], [alice]);
    assert.equal((await auditActivity(redis, b.id)).reservations.size, 0);
    console.log(`TOKEN_INVALID answers:\n  ${reasons.join("\n  ")}`);
  });

  it("serves a retry of a claimed token for a while after it expired, and nothing else", async () => {
    const a = activityFixture({ id: actId("grace"), totalStock: 10, perUserLimit: 2 });
    await publish(a);
    const u = user();
    // Expires within 1-2 s from now.
    const short = new BuyTokens(SECRET, 5).issue(u, a.id, Date.now() - 4000);
    const requestId = rid();
    const first = await buy(app1, u, a.id, short.token, requestId);
    assert.equal(BuyResult[first.result], "RESERVED", first.message);
    await new Promise((r) => setTimeout(r, Math.max(0, short.expiresAtMs - Date.now() + 50)));

    const retry = await buy(app2, u, a.id, short.token, requestId);
    assert.equal(BuyResult[retry.result], "RESERVED", retry.message);
    assert.equal(retry.orderId, first.orderId);
    const fresh = await buy(app2, u, a.id, short.token);
    assert.equal(BuyResult[fresh.result], "TOKEN_INVALID");
    assert.match(fresh.message, /expired/);
    assert.equal((await auditActivity(redis, a.id)).reservations.size, 1);
  });

  it("refuses bad input and bad identity with gRPC codes, changing nothing", async () => {
    const a = activityFixture({ id: actId("input"), totalStock: 10, perUserLimit: 2 });
    await publish(a);
    const u = user();
    const t = await token(app1, u, a.id);
    const req = { activityId: a.id, quantity: 1, buyToken: t, requestId: rid() };

    await assert.rejects(app1.buy({ ...req, requestId: "" }, as(u)), codeIs(Code.InvalidArgument));
    await assert.rejects(app1.buy({ ...req, quantity: 0 }, as(u)), codeIs(Code.InvalidArgument));
    await assert.rejects(app1.buy({ ...req, quantity: -3 }, as(u)), codeIs(Code.InvalidArgument));
    await assert.rejects(app1.buy({ ...req, quantity: 3 }, as(u)), codeIs(Code.InvalidArgument));
    await assert.rejects(app1.buy({ ...req, activityId: "" }, as(u)), codeIs(Code.InvalidArgument));
    await assert.rejects(
      app1.buy({ ...req, requestId: "r".repeat(300) }, as(u)),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      app1.buy({ ...req, activityId: "no-such-activity" }, as(u)),
      codeIs(Code.NotFound),
    );
    // Identity comes from the gateway's headers only.
    await assert.rejects(app1.buy(req), codeIs(Code.Unauthenticated));
    await assert.rejects(app1.getBuyToken({ activityId: a.id }), codeIs(Code.Unauthenticated));
    await assert.rejects(app1.buy({ ...req, userId: "someone-else" }, as(u)), (err) => {
      codeIs(Code.InvalidArgument)(err);
      assert.match((err as Error).message, /does not match the authenticated user/);
      return true;
    });
    await assert.rejects(
      app1.getBuyToken({ activityId: a.id, userId: "someone-else" }, as(u)),
      codeIs(Code.InvalidArgument),
    );
    await assert.rejects(
      app1.getBuyToken({ activityId: "no-such-activity" }, as(u)),
      codeIs(Code.NotFound),
    );

    assert.equal((await auditActivity(redis, a.id)).reservations.size, 0, "nothing reserved");
    // The token was not consumed by any of that.
    const ok = await app1.buy({ ...req, userId: u }, as(u));
    assert.equal(BuyResult[ok.result], "RESERVED", ok.message);
  });

  it("sells only inside the window", async () => {
    const now = Date.now();
    const soon = activityFixture({ id: actId("soon"), startMs: now + HOUR, endMs: now + 2 * HOUR });
    const over = activityFixture({
      id: actId("over"),
      startMs: now - 2 * HOUR,
      endMs: now - MINUTE,
    });
    const early = activityFixture({ id: actId("early"), status: ActivityStatus.ENDED });
    for (const a of [soon, over, early]) await publish(a);
    const u = user();
    const minted = new BuyTokens(SECRET, 60);

    await assert.rejects(app1.getBuyToken({ activityId: soon.id }, as(u)), (err) => {
      codeIs(Code.FailedPrecondition)(err);
      assert.match((err as Error).message, /opens at/);
      return true;
    });
    const notStarted = await buy(app1, u, soon.id, minted.issue(u, soon.id).token);
    assert.equal(BuyResult[notStarted.result], "NOT_STARTED");
    assert.match(notStarted.message, /opens at/);

    for (const a of [over, early]) {
      await assert.rejects(app1.getBuyToken({ activityId: a.id }, as(u)), (err) => {
        codeIs(Code.FailedPrecondition)(err);
        assert.match((err as Error).message, /ended/);
        return true;
      });
      const r = await buy(app2, u, a.id, minted.issue(u, a.id).token);
      assert.equal(BuyResult[r.result], "ENDED", a.id);
    }
    for (const a of [soon, over, early])
      assert.equal((await auditActivity(redis, a.id)).reservations.size, 0);
  });

  it("enforces an end time changed in etcd within a second, on every instance", async () => {
    const a = activityFixture({ id: actId("cut"), totalStock: 10, perUserLimit: 1 });
    await publish(a);
    const [u1, u2] = [user(), user()];
    const t1 = await token(app1, u1, a.id);
    const t2 = await token(app2, u2, a.id);
    const endedBefore = await metricValue(metricsRegistry, "seckill_app_buy_results_total", {
      result: "ENDED",
      by: "app",
    });

    // Admin ends the sale by moving the end time (a new revision) — only in etcd here, so
    // the answers below are the apps' own (core would refuse too, from its own copy).
    const changed = activityFixture({
      id: a.id,
      totalStock: 10,
      perUserLimit: 1,
      endMs: Date.now() - 1000,
      revision: 2,
    });
    await etcd.put(activityKey(a.id)).value(encodeActivity(changed));
    const ms = await Promise.all(
      [app1, app2].map((app) =>
        pollUntil(
          async () => {
            const { activity: seen } = await app.getActivity({ activityId: a.id });
            return seen?.status === ActivityStatus.ENDED;
          },
          { timeoutMs: 1000, message: "the new end time", retryErrors: true },
        ),
      ),
    );
    const r1 = await buy(app1, u1, a.id, t1);
    const r2 = await buy(app2, u2, a.id, t2);
    assert.deepEqual([BuyResult[r1.result], BuyResult[r2.result]], ["ENDED", "ENDED"]);
    assert.equal(
      await metricValue(metricsRegistry, "seckill_app_buy_results_total", {
        result: "ENDED",
        by: "app",
      }),
      endedBefore + 2,
    );
    await assert.rejects(
      app1.getBuyToken({ activityId: a.id }, as(u1)),
      codeIs(Code.FailedPrecondition),
    );
    assert.equal((await auditActivity(redis, a.id)).reservations.size, 0);
    console.log(
      `end time change seen by the apps after ${ms.map((m) => m.toFixed(0)).join(", ")} ms`,
    );
  });

  it("refuses blacklisted users and IPs, and lets them back in when removed", async () => {
    const a = activityFixture({ id: actId("bl"), totalStock: 10, perUserLimit: 1 });
    await publish(a);
    const [mallory, alice] = [user(), user()];
    const malloryToken = await token(app1, mallory, a.id);
    // Polled with GetBuyToken, which changes nothing.
    const refusedToken = (app: AppClient, userId: string, ip?: string) => async () => {
      try {
        await app.getBuyToken({ activityId: a.id }, as(userId, ip));
        return false;
      } catch (err) {
        return err instanceof ConnectError && err.code === Code.PermissionDenied;
      }
    };

    await putBlacklistEntry(redis, "user", mallory, { reason: "bot", expiresAtMs: 0 });
    const tookMs = await Promise.all([
      pollUntil(refusedToken(app1, mallory), {
        timeoutMs: 1000,
        message: "the user entry on app-1",
        retryErrors: true,
      }),
      pollUntil(refusedToken(app2, mallory), {
        timeoutMs: 1000,
        message: "the user entry on app-2",
        retryErrors: true,
      }),
    ]);
    for (const app of [app1, app2]) {
      const r = await buy(app, mallory, a.id, malloryToken);
      assert.equal(BuyResult[r.result], "BLACKLISTED");
    }

    const ip = "203.0.113.7";
    const aliceToken = await token(app1, alice, a.id, ip);
    await putBlacklistEntry(redis, "ip", ip, { reason: "abuse", expiresAtMs: 0 });
    await pollUntil(refusedToken(app1, alice, ip), {
      timeoutMs: 1000,
      message: "the IP entry",
      retryErrors: true,
    });
    const r = await buy(app1, alice, a.id, aliceToken, rid(), 1, ip);
    assert.equal(BuyResult[r.result], "BLACKLISTED");
    assert.equal((await auditActivity(redis, a.id)).reservations.size, 0);

    await removeBlacklistEntry(redis, "user", mallory);
    await removeBlacklistEntry(redis, "ip", ip);
    await pollUntil(async () => !(await refusedToken(app1, mallory)()), {
      timeoutMs: 1000,
      message: "the removal",
      retryErrors: true,
    });
    const back = await buy(app1, mallory, a.id, malloryToken);
    assert.equal(BuyResult[back.result], "RESERVED", "the same token works again");
    console.log(
      `blacklist entry enforced by both apps after ${tookMs.map((m) => m.toFixed(0)).join(", ")} ms`,
    );
  });

  it("rate-limits a user per activity across two instances sharing Redis", async () => {
    const tight = { USER_RATE_LIMIT: "4", USER_RATE_WINDOW_MS: "60000", TOKEN_RATE_LIMIT: "3" };
    const x = (await startApp("app-rl-x", tight)).client;
    const y = (await startApp("app-rl-y", tight)).client;
    const a = activityFixture({ id: actId("rl"), totalStock: 10, perUserLimit: 1 });
    await publish(a, [x, y]);
    const u = user();

    const t = await token(x, u, a.id);
    await token(y, u, a.id);
    await token(x, u, a.id);
    await assert.rejects(token(y, u, a.id), (err) => {
      codeIs(Code.ResourceExhausted)(err);
      assert.ok(Number((err as ConnectError).metadata.get("retry-after-ms")) > 0);
      return true;
    });

    const requestId = rid();
    const answers: string[] = [];
    for (const app of [x, y, x, y]) {
      const r = await buy(app, u, a.id, t, requestId);
      answers.push(BuyResult[r.result]);
    }
    assert.deepEqual(answers, ["RESERVED", "RESERVED", "RESERVED", "RESERVED"]);
    const limited = await buy(x, u, a.id, t, requestId);
    assert.equal(BuyResult[limited.result], "RATE_LIMITED");
    assert.ok(
      limited.retryAfterMs > 0 && limited.retryAfterMs <= 60_000,
      `${limited.retryAfterMs}`,
    );
    const other = user();
    const otherToken = await token(y, other, a.id);
    const unaffected = await buy(y, other, a.id, otherToken);
    assert.equal(BuyResult[unaffected.result], "RESERVED", "the limit is per user");
    assert.equal((await auditActivity(redis, a.id)).reservations.size, 2);
  });

  it("answers SOLD_OUT from the local flag without core, until core's restock message", async () => {
    const a = activityFixture({ id: actId("sold"), totalStock: 2, perUserLimit: 1 });
    await publish(a);
    const [u1, u2, u3] = [user(), user(), user()];
    const r1 = await buy(app1, u1, a.id, await token(app1, u1, a.id));
    assert.equal(BuyResult[r1.result], "RESERVED");
    // The page's count: core's remaining stock, at most about half a second old.
    await pollUntil(async () => (await app1.getActivity({ activityId: a.id })).remaining === 1n, {
      timeoutMs: 1500,
      message: "remaining 1",
      retryErrors: true,
    });
    const t2 = await token(app1, u2, a.id);
    const rid2 = rid();
    const r2 = await buy(app1, u2, a.id, t2, rid2);
    assert.equal(BuyResult[r2.result], "RESERVED");
    assert.equal(r2.soldOut, true, "the last unit says sold out");

    const t3 = await token(app1, u3, a.id);
    const callsBefore = await reserveCalls();
    for (let i = 0; i < 5; i++) {
      const r = await buy(app1, u3, a.id, t3);
      assert.equal(BuyResult[r.result], "SOLD_OUT");
      assert.equal(r.soldOut, true);
    }
    assert.equal(await reserveCalls(), callsBefore, "no Reserve reached core");
    await pollUntil(async () => (await app1.getActivity({ activityId: a.id })).remaining === 0n, {
      timeoutMs: 1500,
      message: "remaining 0",
      retryErrors: true,
    });
    const seen = await app1.getActivity({ activityId: a.id });
    assert.equal(seen.soldOut, true);
    assert.equal(seen.activity?.status, ActivityStatus.SOLD_OUT);
    const listed = (await app1.listActivities({})).activities.find((x) => x.id === a.id);
    assert.equal(listed?.status, ActivityStatus.SOLD_OUT);

    // The winner's retry still gets its order (it does go to core, which remembers it).
    const retry = await buy(app1, u2, a.id, t2, rid2);
    assert.equal(BuyResult[retry.result], "RESERVED");
    assert.equal(retry.orderId, r2.orderId);
    assert.equal(await reserveCalls(), callsBefore + 1);

    // Stock comes back: core publishes a restock message and the flag drops at once.
    const released = await coreClient.release({
      activityId: a.id,
      reservationId: r1.orderId,
      reason: "user_cancelled",
    });
    assert.equal(released.released, true);
    const ms = await pollUntil(
      async () => {
        const { soldOut } = await app1.getActivity({ activityId: a.id });
        return !soldOut;
      },
      { timeoutMs: 1000, message: "the restock message", retryErrors: true },
    );
    // u3's token was never consumed by the SOLD_OUT answers.
    const r3 = await buy(app1, u3, a.id, t3);
    assert.equal(BuyResult[r3.result], "RESERVED", r3.message);
    assert.equal(await reserveCalls(), callsBefore + 2);
    const audit = await auditActivity(redis, a.id);
    assert.deepEqual(audit.violations, []);
    console.log(`sold-out flag cleared ${ms.toFixed(0)} ms after the Release`);
  });

  it("drops the sold-out flag after its TTL when no restock message comes", async () => {
    const x = (await startApp("app-ttl", { SOLD_OUT_TTL_MS: "300" })).client;
    const a = activityFixture({ id: actId("ttl"), totalStock: 1, perUserLimit: 1 });
    await publish(a, [x]);
    const [u1, u2] = [user(), user()];
    const r1 = await buy(x, u1, a.id, await token(x, u1, a.id));
    assert.equal(r1.soldOut, true);
    const t2 = await token(x, u2, a.id);
    const calls = await reserveCalls();
    assert.equal(BuyResult[(await buy(x, u2, a.id, t2)).result], "SOLD_OUT");
    assert.equal(await reserveCalls(), calls, "answered by the flag");
    await pollUntil(async () => !(await x.getActivity({ activityId: a.id })).soldOut, {
      timeoutMs: 2000,
      message: "the TTL",
      retryErrors: true,
    });
    assert.equal(BuyResult[(await buy(x, u2, a.id, t2)).result], "SOLD_OUT");
    assert.equal(await reserveCalls(), calls + 1, "asked core again after the TTL");
  });

  it("sheds Buy calls beyond MAX_INFLIGHT at once with OVERLOADED, and they can retry", async () => {
    const x = (
      await startApp("app-tiny", {
        MAX_INFLIGHT: "1",
        ADMISSION_QUEUE: "0",
        ADMISSION_WAIT_MS: "0",
      })
    ).client;
    const a = activityFixture({ id: actId("shed"), totalStock: 1000, perUserLimit: 1 });
    await publish(a, [x, app1]);
    const buyers = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const u = user();
        // Any instance's token works on every instance (one shared secret).
        return { u, t: await token(app1, u, a.id), r: rid() };
      }),
    );
    const shedBefore = await metricValue(metricsRegistry, "seckill_app_shed_total", {
      gate: "buy",
    });
    const started = performance.now();
    const answers = await Promise.all(buyers.map((b) => buy(x, b.u, a.id, b.t, b.r)));
    const tookMs = performance.now() - started;
    const overloaded = answers.filter((r) => r.result === BuyResult.OVERLOADED);
    const reserved = answers.filter((r) => r.result === BuyResult.RESERVED);
    assert.equal(overloaded.length + reserved.length, answers.length);
    assert.ok(overloaded.length > 0, "something was shed");
    assert.ok(reserved.length > 0, "something got through");
    for (const r of overloaded) assert.ok(r.retryAfterMs > 0);
    assert.equal(
      await metricValue(metricsRegistry, "seckill_app_shed_total", { gate: "buy" }),
      shedBefore + overloaded.length,
    );

    // A shed call consumed nothing: the same token and request id work once there is room.
    for (const [i, r] of answers.entries()) {
      if (r.result !== BuyResult.OVERLOADED) continue;
      const b = buyers[i]!;
      const again = await buy(x, b.u, a.id, b.t, b.r);
      assert.equal(BuyResult[again.result], "RESERVED");
    }
    assert.equal((await auditActivity(redis, a.id)).reservations.size, 40);
    console.log(
      `admission (MAX_INFLIGHT=1, no queue): 40 concurrent buys → ${reserved.length} reserved, ${overloaded.length} OVERLOADED, in ${tookMs.toFixed(0)} ms`,
    );
  });

  it("keeps selling on its last snapshot while etcd is down", async () => {
    const a = activityFixture({ id: actId("static"), totalStock: 10, perUserLimit: 1 });
    await publish(a);
    await etcdServer.kill("SIGKILL");
    try {
      const { activities } = await app1.listActivities({});
      assert.ok(activities.some((x) => x.id === a.id));
      for (const app of [app1, app2]) {
        const u = user();
        const r = await buy(app, u, a.id, await token(app, u, a.id));
        assert.equal(BuyResult[r.result], "RESERVED", r.message);
      }
    } finally {
      await etcdServer.restart();
    }
    // And it follows changes again once etcd is back.
    const changed = activityFixture({ id: a.id, totalStock: 10, perUserLimit: 3, revision: 2 });
    // The test's own etcd client may still be backing off from the outage: retry the write.
    await pollUntil(
      async () => {
        await etcd.put(activityKey(a.id)).value(encodeActivity(changed));
        return true;
      },
      { timeoutMs: 15_000, message: "the write after etcd's restart", retryErrors: true },
    );
    await pollUntil(
      async () => {
        const { activity: seen } = await app1.getActivity({ activityId: a.id });
        return seen?.perUserLimit === 3;
      },
      { timeoutMs: 15_000, message: "the change after etcd's restart", retryErrors: true },
    );
  });
});
