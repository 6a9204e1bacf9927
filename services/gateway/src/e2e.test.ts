/**
 * End to end through the gateway, on the local stack: private redis-server,
 * mariadbd and etcd, and every service as its own process (auth, admin,
 * 2 × seckill-core, order, 2 × seckill-app, gateway). Every call of the
 * tests goes through the gateway, as a browser or an app would make it; the
 * tests only read MySQL and Redis to check the invariants (and, once, change
 * a counter on purpose to see Reconcile notice).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { generateSigningKey, keyRing, TokenIssuer } from "../../auth/src/testing.ts";
import { MismatchKind } from "../../gen/seckill/admin/v1/admin_pb.ts";
import {
  type Activity,
  ActivityStatus,
  BuyResult,
  OrderStatus,
} from "../../gen/seckill/common/v1/common_pb.ts";
import { activityKeys } from "../../shared/src/data-plane/keys.ts";
import { SERVICES_PREFIX } from "../../shared/src/mesh/registry.ts";
import { type LocalStack, startLocalStack } from "../../shared/src/stack/local-stack.ts";
import { defaultPlan, isBuilt } from "../../shared/src/stack/plan.ts";
import { createEtcd } from "../../shared/src/stores/etcd.ts";
import { expectCode, metricValue, pollUntil } from "../../shared/src/testing/index.ts";
import { USER_ID_HEADER, USER_ROLE_HEADER } from "../../shared/src/transport/identity.ts";
import {
  type BuyAttempt,
  buy,
  buyerIp,
  buyToken,
  createSale,
  type EdgeClients,
  edgeClients,
  h2cClients,
  login,
  OtlpCollector,
  pool,
  type Session,
  Stores,
  serverNow,
  session,
  waitForStart,
} from "./testing/e2e.ts";

const plan = defaultPlan();
const ready = plan.every(isBuilt);

/** auth signs with this key (JWT_PRIVATE_KEYS), so the test can mint an expired token. */
const authKey = generateSigningKey("e2e-key");
const authIssuer = new TokenIssuer(keyRing([authKey.key]), {
  issuer: "seckill-auth",
  audience: "seckill",
  accessTtlSeconds: 900,
  refreshTtlSeconds: 3600,
});
const ADMIN = { username: "admin", password: "admin-password" };
const PASSWORD = "flash-sale-e2e-password";
const run = randomBytes(3).toString("hex");

let stack: LocalStack;
let stateDir: string;
let stores: Stores;
const collector = new OtlpCollector();
/** Connect over h2c (an app or a server-side client). */
let c: EdgeClients;
/** gRPC-Web over HTTP/1.1 (a browser). */
let web: EdgeClients;
let admin: Session;
let gatewayMetricsPort: number;
let ipCounter = 1;
const nextIp = () => buyerIp(ipCounter++);

/** Users with access tokens, made by admin through the gateway (ProvisionUsers). */
async function provision(count: number, prefix: string): Promise<Session[]> {
  const out: Session[] = [];
  for (let start = 0; start < count; start += 5000) {
    const res = await c.auth.provisionUsers(
      {
        count: Math.min(5000, count - start),
        usernamePrefix: `${prefix}-${run}-`,
        password: PASSWORD,
        startIndex: start,
        issueTokens: true,
      },
      { headers: admin.headers, timeoutMs: 60_000 },
    );
    for (const u of res.users) out.push(session(u.userId, u.accessToken, nextIp()));
  }
  return out;
}

const stats = async (activityId: string) =>
  c.admin.getStats({ activityId }, { headers: admin.headers });

/** Waits until order copied every reservation of the activity to MySQL. */
async function drained(activityId: string, expectedRows: number) {
  return pollUntil(
    async () =>
      (await stores.orders(activityId)).length >= expectedRows &&
      (await stores.pending(activityId)) === 0,
    { timeoutMs: 60_000, intervalMs: 200, message: `orders of ${activityId} in MySQL` },
  );
}

function summarize(attempts: readonly BuyAttempt[]) {
  const by = new Map<string, number>();
  for (const a of attempts) {
    const name = BuyResult[a.res.result] ?? String(a.res.result);
    by.set(name, (by.get(name) ?? 0) + 1);
  }
  return Object.fromEntries(by);
}

/** utime + stime of every service process and of this one, in ms (Linux /proc). */
function processCpu(): Record<string, number> {
  const tick = 10; // USER_HZ = 100 on Linux
  const read = (pid: number) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return (Number(fields[11]) + Number(fields[12])) * tick;
    } catch {
      return 0;
    }
  };
  const out: Record<string, number> = { "test client": read(process.pid) };
  for (const i of stack.instances) out[i.instanceId] = read(i.pid);
  return out;
}

function cpuSince(before: Record<string, number>): Record<string, number> {
  const now = processCpu();
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

describe("end to end through the gateway", {
  skip: !ready && "admin or seckill-app not built yet",
}, () => {
  let full: Activity;
  let buyers: Session[] = [];

  before(async () => {
    await collector.start();
    stateDir = mkdtempSync(join(tmpdir(), "seckill-gateway-e2e-"));
    const started = Date.now();
    stack = await startLocalStack({
      plan,
      stateDir,
      env: {
        JWT_PRIVATE_KEYS: JSON.stringify([authKey.entry]),
        // Every buyer comes with its own address in X-Forwarded-For, as behind a load balancer.
        TRUSTED_PROXY_HOPS: "1",
        REGISTRATION_TTL_SECONDS: "3",
        SHUTDOWN_DELAY_MS: "300",
        // The limit-change test polls with fresh tokens; the defaults would refuse that.
        TOKEN_RATE_LIMIT: "100000",
        USER_RATE_LIMIT: "100000",
        // Spans go to the test's collector; only traces the client asks for are sampled.
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: "100",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0",
        LOG_LEVEL: "info",
        ...(process.env.E2E_PROFILE
          ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.E2E_PROFILE}` }
          : {}),
      },
      progress: (line) => console.log(`· ${line}`),
    });
    console.log(`· stack up in ${Date.now() - started} ms`);
    const gateway = stack.instances.find((i) => i.service === "gateway")!;
    const serving = gateway.process.logs.find((l) => l.msg === "serving")!;
    gatewayMetricsPort = gateway.metricsPort;
    c = h2cClients(gateway.port);
    web = edgeClients(
      createGrpcWebTransport({
        baseUrl: `http://127.0.0.1:${serving.http1Port as number}`,
        httpVersion: "1.1",
      }),
    );
    stores = Stores.open(stack.infra.mariadb.uri, stack.infra.redis.url);
    admin = await login(c, ADMIN.username, ADMIN.password, nextIp());
  });

  after(async () => {
    await stores?.close();
    await stack?.stop();
    await collector.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it("runs a full sale as users do it: register, login, list, wait, token, buy, watch, pay", {
    timeout: 120_000,
  }, async () => {
    full = await createSale(c, admin, {
      stock: 20,
      perUserLimit: 2,
      startInMs: 3000,
      title: "Full sale",
    });
    assert.equal(full.status, ActivityStatus.PUBLISHED);

    // Five buyers register and log in; the last one is a browser (gRPC-Web over HTTP/1.1).
    const users: { s: Session; client: EdgeClients }[] = [];
    for (let i = 0; i < 5; i++) {
      const client = i === 4 ? web : c;
      const username = `buyer-${run}-${i}`;
      const registered = await client.auth.register({ username, password: PASSWORD });
      const s = await login(client, username, PASSWORD, nextIp());
      assert.equal(s.userId, registered.user?.id);
      const me = await client.auth.getMe({}, { headers: s.headers });
      assert.equal(me.user?.username, username);
      users.push({ s, client });
    }
    buyers = users.map((u) => u.s);

    const listed = await web.app.listActivities({});
    const mine = listed.activities.find((a) => a.id === full.id);
    assert.ok(mine, "the published activity is listed");
    assert.equal(mine.status, ActivityStatus.PUBLISHED, "not started yet");
    await expectCode(
      c.app.getBuyToken({ activityId: full.id }, { headers: buyers[0]!.headers }),
      Code.FailedPrecondition,
      { what: "token before the start" },
    );

    await waitForStart(c, full);
    console.log(
      `sale open at ${new Date(timestampMs(full.startTime!)).toISOString()} (server clock)`,
    );

    const paid = await Promise.all(
      users.map(async ({ s, client }) => {
        const token = await buyToken(client, s, full.id);
        const attempt = await buy(client, s, full.id, token);
        assert.equal(BuyResult[attempt.res.result], "RESERVED", attempt.res.message);
        const orderId = attempt.res.orderId;
        // Watch the order until the row exists and waits for payment.
        let seen: OrderStatus | undefined;
        for await (const m of client.order.watchOrder(
          { orderId, activityId: full.id },
          { headers: s.headers, timeoutMs: 20_000 },
        )) {
          seen = m.order?.status;
          if (seen === OrderStatus.PENDING_PAYMENT) break;
        }
        assert.equal(seen, OrderStatus.PENDING_PAYMENT);
        const payment = await client.order.pay(
          { orderId, paymentId: `pay-${randomUUID()}` },
          { headers: s.headers },
        );
        assert.equal(payment.order?.status, OrderStatus.PAID);
        // The stream of a final order sends it and ends.
        const states: OrderStatus[] = [];
        for await (const m of client.order.watchOrder(
          { orderId },
          { headers: s.headers, timeoutMs: 10_000 },
        )) {
          states.push(m.order!.status);
        }
        assert.deepEqual(states, [OrderStatus.PAID]);
        return orderId;
      }),
    );
    const mine0 = await c.order.listMyOrders(
      { activityId: full.id },
      { headers: buyers[0]!.headers },
    );
    assert.deepEqual(
      mine0.orders.map((o) => [o.id, o.status]),
      [[paid[0], OrderStatus.PAID]],
    );
    const s = await stats(full.id);
    assert.deepEqual(
      { remaining: s.remaining, reserved: s.reserved, paid: s.paid, orders: s.orders },
      { remaining: 15n, reserved: 0n, paid: 5n, orders: 5n },
    );
  });

  it("traces one Buy through gateway, seckill-app and seckill-core under one trace id", {
    timeout: 60_000,
  }, async () => {
    const u = buyers[0]!;
    const token = await buyToken(c, u, full.id);
    const traceId = randomBytes(16).toString("hex");
    const res = await c.app.buy(
      { activityId: full.id, quantity: 1, buyToken: token, requestId: randomUUID() },
      {
        headers: {
          ...u.headers,
          traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01`,
        },
      },
    );
    assert.equal(BuyResult[res.result], "RESERVED", res.message);
    await pollUntil(
      async () => {
        const services = new Set(collector.of(traceId).map((s) => s.service));
        return ["gateway", "seckill-app", "seckill-core"].every((name) => services.has(name));
      },
      {
        timeoutMs: 15_000,
        intervalMs: 100,
        message: "spans of gateway, seckill-app and seckill-core",
      },
    );
    const spans = collector.of(traceId);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const depth = (s: (typeof spans)[number]): number =>
      byId.has(s.parentSpanId) ? 1 + depth(byId.get(s.parentSpanId)!) : 0;
    console.log(`trace ${traceId}:`);
    for (const s of [...spans].sort((a, b) => depth(a) - depth(b))) {
      console.log(`  ${"  ".repeat(depth(s))}${s.service}: ${s.name} (kind ${s.kind})`);
    }
    const edge = spans.find(
      (s) => s.service === "gateway" && s.name.endsWith("/Buy") && s.kind === 2,
    );
    assert.ok(edge, "the gateway's server span");
    const appServer = spans.find(
      (s) => s.service === "seckill-app" && s.name.endsWith("/Buy") && s.kind === 2,
    );
    assert.ok(
      appServer && byId.get(appServer.parentSpanId)?.service === "gateway",
      "app's span is a child of the gateway's",
    );
    assert.ok(
      spans.some(
        (s) => s.service === "seckill-core" && s.name.endsWith("/Reserve") && s.kind === 2,
      ),
    );
  });

  it("refuses what it must with the right code, and nothing changes", {
    timeout: 60_000,
  }, async () => {
    const victim = buyers[1]!;
    const attacker = buyers[2]!;
    // The victim holds one paid unit; a first legitimate use of a token, before the snapshot.
    const victimToken = await buyToken(c, victim, full.id);
    const original = await buy(c, victim, full.id, victimToken);
    assert.equal(BuyResult[original.res.result], "RESERVED");
    await drained(full.id, 7);

    const before = await stats(full.id);
    const rowsBefore = await stores.orders(full.id);
    const buyReq = {
      activityId: full.id,
      quantity: 1,
      buyToken: victimToken,
      requestId: randomUUID(),
    };

    // No token.
    await expectCode(c.app.buy(buyReq), Code.Unauthenticated, { what: "Buy without token" });
    await expectCode(c.app.getBuyToken({ activityId: full.id }), Code.Unauthenticated, {
      what: "GetBuyToken without token",
    });
    await expectCode(c.order.listMyOrders({}), Code.Unauthenticated, {
      what: "ListMyOrders without token",
    });
    await expectCode(
      c.order.pay({ orderId: original.res.orderId, paymentId: "p" }),
      Code.Unauthenticated,
      { what: "Pay without token" },
    );
    await expectCode(c.auth.getMe({}), Code.Unauthenticated, { what: "GetMe without token" });
    await expectCode(c.admin.getStats({ activityId: full.id }), Code.Unauthenticated, {
      what: "GetStats without token",
    });
    // Identity headers from a client are not identity.
    const spoof = { [USER_ID_HEADER]: admin.userId, [USER_ROLE_HEADER]: "admin" };
    await expectCode(
      c.admin.endActivity({ activityId: full.id }, { headers: spoof }),
      Code.Unauthenticated,
      { what: "spoofed identity headers without token" },
    );

    // Expired, forged and tampered tokens.
    const expired = await authIssuer.access(
      { id: attacker.userId, role: "user" },
      Date.now() - 3_600_000,
    );
    await expectCode(
      c.app.getBuyToken(
        { activityId: full.id },
        { headers: { authorization: `Bearer ${expired.token}` } },
      ),
      Code.Unauthenticated,
      { what: "expired token", message: /expired/ },
    );
    const forgerKey = generateSigningKey(authKey.kid);
    const forger = new TokenIssuer(keyRing([forgerKey.key]), {
      issuer: "seckill-auth",
      audience: "seckill",
      accessTtlSeconds: 900,
      refreshTtlSeconds: 900,
    });
    const forged = await forger.access({ id: admin.userId, role: "admin" });
    await expectCode(
      c.admin.endActivity(
        { activityId: full.id },
        { headers: { authorization: `Bearer ${forged.token}` } },
      ),
      Code.Unauthenticated,
      { what: "forged admin token", message: /signature/ },
    );
    const [h, payload, sig] = attacker.headers.authorization!.slice(7).split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, role: "admin" })).toString("base64url")}.${sig}`;
    await expectCode(
      c.admin.endActivity(
        { activityId: full.id },
        { headers: { authorization: `Bearer ${tampered}` } },
      ),
      Code.Unauthenticated,
      { what: "token with its role changed" },
    );

    // A user token on admin RPCs, even with admin identity headers added.
    const asUser = { headers: { ...attacker.headers, ...spoof } };
    await expectCode(c.admin.endActivity({ activityId: full.id }, asUser), Code.PermissionDenied, {
      what: "EndActivity",
    });
    await expectCode(
      c.admin.updateActivity({ activityId: full.id, perUserLimit: 100 }, asUser),
      Code.PermissionDenied,
      { what: "UpdateActivity" },
    );
    await expectCode(
      c.admin.createProduct({ name: "x", priceCents: 1n, currency: "USD" }, asUser),
      Code.PermissionDenied,
      { what: "CreateProduct" },
    );
    await expectCode(
      c.admin.addBlacklistEntry({ kind: 1, value: victim.userId }, asUser),
      Code.PermissionDenied,
      { what: "AddBlacklistEntry" },
    );
    await expectCode(c.admin.getStats({ activityId: full.id }, asUser), Code.PermissionDenied, {
      what: "GetStats",
    });
    await expectCode(c.admin.reconcile({}, asUser), Code.PermissionDenied, { what: "Reconcile" });
    await expectCode(
      c.auth.provisionUsers({ count: 1, usernamePrefix: "x", password: PASSWORD }, asUser),
      Code.PermissionDenied,
      { what: "ProvisionUsers" },
    );
    // The spoofed user id is ignored: the attacker sees only their own orders.
    const listed = await c.order.listMyOrders({}, asUser);
    assert.ok(listed.orders.every((o) => o.userId === attacker.userId));

    // Another user's order is not found; a body user id must be the caller's.
    await expectCode(
      c.order.getOrder({ orderId: original.res.orderId }, { headers: attacker.headers }),
      Code.NotFound,
      { what: "another user's order" },
    );
    await expectCode(
      c.order.pay(
        { orderId: original.res.orderId, paymentId: `p-${run}` },
        { headers: attacker.headers },
      ),
      Code.NotFound,
      { what: "paying another user's order" },
    );
    await expectCode(
      c.order.cancel({ orderId: original.res.orderId }, { headers: attacker.headers }),
      Code.NotFound,
      { what: "cancelling another user's order" },
    );
    await expectCode(
      c.app.getBuyToken(
        { activityId: full.id, userId: victim.userId },
        { headers: attacker.headers },
      ),
      Code.InvalidArgument,
      { what: "GetBuyToken for another user id" },
    );
    await expectCode(
      c.app.buy({ ...buyReq, userId: victim.userId }, { headers: attacker.headers }),
      Code.InvalidArgument,
      { what: "Buy with another user id in the body" },
    );

    // Buy tokens: reused, or another user's, are refused (typed result); the same request retried is not.
    const reused = await buy(c, victim, full.id, victimToken);
    assert.equal(BuyResult[reused.res.result], "TOKEN_INVALID", "reused token");
    const stolen = await buy(c, attacker, full.id, victimToken);
    assert.equal(BuyResult[stolen.res.result], "TOKEN_INVALID", "another user's token");
    const retried = await buy(c, victim, full.id, victimToken, 1, original.requestId);
    assert.equal(BuyResult[retried.res.result], "RESERVED", "a retry of the same request");
    assert.equal(retried.res.orderId, original.res.orderId, "gets the original order");

    const after = await stats(full.id);
    assert.deepEqual(
      [after.remaining, after.reserved, after.paid, after.orders, after.cancelled],
      [before.remaining, before.reserved, before.paid, before.orders, before.cancelled],
      "nothing changed",
    );
    assert.deepEqual(
      (await stores.orders(full.id)).map((r) => [r.id, r.status]).sort(),
      rowsBefore.map((r) => [r.id, r.status]).sort(),
    );
    const stillActive = await c.app.getActivity({ activityId: full.id });
    assert.notEqual(stillActive.activity?.status, ActivityStatus.ENDED);
  });

  it("Reconcile reports a mismatch introduced on purpose, and none once it is undone", {
    timeout: 60_000,
  }, async () => {
    const clean = await c.admin.reconcile({ activityId: full.id }, { headers: admin.headers });
    assert.deepEqual(clean.mismatches, [], "clean before");
    const stockKey = activityKeys(full.id).stock;
    await stores.redis.incr(stockKey);
    try {
      const broken = await c.admin.reconcile({ activityId: full.id }, { headers: admin.headers });
      assert.equal(broken.ok, false);
      const kinds = broken.mismatches.map((m) => MismatchKind[m.kind]);
      console.log(
        `mismatches found: ${broken.mismatches.map((m) => `${MismatchKind[m.kind]} ${m.key}: ${m.detail}`).join("; ")}`,
      );
      assert.ok(kinds.includes("CONSERVATION"), kinds.join());
    } finally {
      await stores.redis.decr(stockKey);
    }
    const again = await c.admin.reconcile({ activityId: full.id }, { headers: admin.headers });
    assert.equal(again.ok, true, JSON.stringify(again.mismatches));
  });

  it("enforces a new per-user limit and end time on every app and core within a second", {
    timeout: 90_000,
  }, async () => {
    const act = await createSale(c, admin, { stock: 100, perUserLimit: 1, startInMs: 1500 });
    const users = await provision(12, "limits");
    await waitForStart(c, act);
    const attempt = async (u: Session, quantity = 1) =>
      buy(c, u, act.id, await buyToken(c, u, act.id), quantity);
    const u0 = users[0]!;
    assert.equal(BuyResult[(await attempt(u0)).res.result], "RESERVED");
    assert.equal(BuyResult[(await attempt(u0)).res.result], "LIMIT_REACHED");

    // Raise the limit: core (which counts holdings) must let u0 buy again.
    const raised = Date.now();
    await c.admin.updateActivity(
      { activityId: act.id, perUserLimit: 3 },
      { headers: admin.headers },
    );
    let raiseMs = -1;
    for (;;) {
      const r = await attempt(u0);
      if (BuyResult[r.res.result] === "RESERVED") {
        raiseMs = Date.now() - raised;
        break;
      }
      assert.equal(BuyResult[r.res.result], "LIMIT_REACHED");
      if (Date.now() - raised > 5000) assert.fail("the raised limit was not applied within 5 s");
    }
    // Core enforces it as soon as admin answers; the apps learn it from etcd: wait (≤ 1 s)
    // until consecutive reads, which alternate between the two apps, all show the new limit.
    let seen = 0;
    while (seen < 4) {
      const { activity } = await c.app.getActivity({ activityId: act.id });
      seen = activity?.perUserLimit === 3 ? seen + 1 : 0;
      if (Date.now() - raised > 1000) assert.fail("not every app saw the raised limit within 1 s");
    }
    // Quantity 2 is within the new limit on every app: concurrent calls alternate between them.
    const concurrently = async (us: Session[], quantity: number) => {
      const toks = await Promise.all(us.map((u) => buyToken(c, u, act.id)));
      return Promise.all(
        us.map((u, i) =>
          buy(c, u, act.id, toks[i]!, quantity).then(
            (a) => BuyResult[a.res.result] ?? "?",
            (err) => Code[ConnectError.from(err).code] ?? "?",
          ),
        ),
      );
    };
    assert.deepEqual(await concurrently(users.slice(1, 5), 2), Array(4).fill("RESERVED"));

    // Lower it again: apps refuse quantity 2 from their snapshot.
    const lowered = Date.now();
    await c.admin.updateActivity(
      { activityId: act.id, perUserLimit: 1 },
      { headers: admin.headers },
    );
    let lowerMs = -1;
    const refusedQuantity = async (u: Session) => {
      try {
        const r = await attempt(u, 2);
        return r.res.result !== BuyResult.RESERVED;
      } catch (err) {
        return ConnectError.from(err).code === Code.InvalidArgument;
      }
    };
    for (let i = 5; ; i++) {
      if (await refusedQuantity(users[i % users.length]!)) {
        lowerMs = Date.now() - lowered;
        break;
      }
      if (Date.now() - lowered > 5000) assert.fail("the lowered limit was not applied within 5 s");
    }
    const refusals = await concurrently(users.slice(6, 10), 2);
    assert.ok(
      refusals.every(
        (r) => r === "InvalidArgument" || r === "INVALID_QUANTITY" || r === "LIMIT_REACHED",
      ),
      `every app refuses quantity 2: ${refusals.join()}`,
    );

    // Move the end time close: after it, every buy answers ENDED (tokens taken before the end).
    const tokens = await Promise.all(users.slice(6, 12).map((u) => buyToken(c, u, act.id)));
    const endAt = (await serverNow(c)) + 1000;
    await c.admin.updateActivity(
      { activityId: act.id, endTime: timestampFromMs(endAt) },
      { headers: admin.headers },
    );
    const appEndedBefore = await Promise.all(
      stack.instances
        .filter((i) => i.service === "seckill-app")
        .map((i) =>
          metricValue(i.metricsPort, "seckill_app_buy_results_total", {
            result: "ENDED",
            by: "app",
          }),
        ),
    );
    while ((await serverNow(c)) < endAt) await sleep(20);
    let endMs = -1;
    for (let i = 0; ; i++) {
      const u = users[6 + (i % 6)]!;
      const r = await buy(c, u, act.id, tokens[i % 6]!);
      if (r.res.result === BuyResult.ENDED) {
        endMs = (await serverNow(c)) - endAt;
        break;
      }
      if ((await serverNow(c)) - endAt > 5000)
        assert.fail("the end time was not applied within 5 s");
    }
    const after = await Promise.all(
      users.slice(6, 12).map((u, i) => buy(c, u, act.id, tokens[i]!)),
    );
    assert.deepEqual(new Set(after.map((a) => BuyResult[a.res.result])), new Set(["ENDED"]));
    const appEndedAfter = await Promise.all(
      stack.instances
        .filter((i) => i.service === "seckill-app")
        .map((i) =>
          metricValue(i.metricsPort, "seckill_app_buy_results_total", {
            result: "ENDED",
            by: "app",
          }),
        ),
    );
    console.log(
      `propagation through admin → core/etcd → apps: limit raised in ${raiseMs} ms, lowered in ${lowerMs} ms, end time enforced ${endMs} ms after it; ENDED answered by each app from its snapshot: ${appEndedAfter.map((n, i) => n - appEndedBefore[i]!).join(", ")}`,
    );
    for (const [i, n] of appEndedAfter.entries())
      assert.ok(n > appEndedBefore[i]!, `app ${i + 1} enforced the end`);
    assert.ok(raiseMs < 1000 && lowerMs < 1000 && endMs < 1000, "within a second");
  });

  it("sells a burst through the gateway: exact stock, SOLD_OUT at the edge, orders drained, Reconcile clean", {
    timeout: 170_000,
  }, async () => {
    const STOCK = 400;
    const BUYERS = 1200;
    const users = await provision(BUYERS, "burst");
    const act = await createSale(c, admin, { stock: STOCK, perUserLimit: 1, startInMs: 1500 });
    await waitForStart(c, act);
    const shortCircuitsBefore = await metricValue(
      gatewayMetricsPort,
      "seckill_gateway_sold_out_short_circuits_total",
    );

    const cpuBefore = processCpu();
    const tokenStarted = Date.now();
    const tokens = await pool(users, 64, (u) => buyToken(c, u, act.id));
    const tokenMs = Date.now() - tokenStarted;
    const latencies: number[] = [];
    const buyStarted = Date.now();
    const attempts = await pool(users, 128, async (u, i) => {
      const t = performance.now();
      const a = await buy(c, u, act.id, tokens[i]!);
      latencies.push(performance.now() - t);
      return a;
    });
    const buyMs = Date.now() - buyStarted;
    const cpu = cpuSince(cpuBefore);
    latencies.sort((a, b) => a - b);
    const shortCircuits =
      (await metricValue(gatewayMetricsPort, "seckill_gateway_sold_out_short_circuits_total")) -
      shortCircuitsBefore;
    const results = summarize(attempts);
    console.log(
      `burst: ${BUYERS} buyers, stock ${STOCK}: GetBuyToken ${((BUYERS * 1000) / tokenMs).toFixed(0)}/s; Buy ${((BUYERS * 1000) / buyMs).toFixed(0)} calls/s through the gateway (p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, 128 in flight); results ${JSON.stringify(results)}; answered SOLD_OUT at the edge: ${shortCircuits}; shed and retried: ${attempts.reduce((n, a) => n + a.sheds, 0)}`,
    );
    console.log(
      `CPU ms per process over tokens + buys (${BUYERS} GetBuyToken + ${BUYERS} Buy): ${Object.entries(
        cpu,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}`,
    );
    assert.equal(results.RESERVED, STOCK, "every unit sold, none twice");
    assert.equal(results.SOLD_OUT, BUYERS - STOCK);
    assert.ok(shortCircuits > 0, "the edge answered some SOLD_OUT itself");
    await drained(act.id, STOCK);
    const rows = await stores.orders(act.id);
    assert.equal(rows.length, STOCK);
    const reconcile = await c.admin.reconcile({ activityId: act.id }, { headers: admin.headers });
    assert.equal(reconcile.ok, true, JSON.stringify(reconcile.mismatches));
  });

  it("keeps selling on the last snapshot while etcd is down", { timeout: 120_000 }, async () => {
    const act = await createSale(c, admin, { stock: 300, perUserLimit: 1, startInMs: 1500 });
    const users = await provision(250, "noetcd");
    await waitForStart(c, act);
    const first = await pool(users.slice(0, 50), 16, async (u) =>
      buy(c, u, act.id, await buyToken(c, u, act.id)),
    );
    await stack.infra.etcd.kill("SIGKILL");
    console.log("etcd killed");
    try {
      const started = Date.now();
      const rest = await pool(users.slice(50), 32, async (u) => {
        const a = await buy(c, u, act.id, await buyToken(c, u, act.id));
        if (a.res.result === BuyResult.RESERVED && a.res.orderId.endsWith("0")) {
          // Some of them also watch and pay while etcd is away.
          for await (const m of c.order.watchOrder(
            { orderId: a.res.orderId, activityId: act.id },
            { headers: u.headers, timeoutMs: 20_000 },
          )) {
            if (m.order?.status === OrderStatus.PENDING_PAYMENT) break;
          }
          const paid = await c.order.pay(
            { orderId: a.res.orderId, paymentId: `pay-${randomUUID()}` },
            { headers: u.headers },
          );
          assert.equal(paid.order?.status, OrderStatus.PAID);
        }
        return a;
      });
      const results = summarize(rest);
      const failures = rest.reduce((n, a) => n + a.failures, 0);
      console.log(
        `without etcd: ${rest.length} buyers in ${Date.now() - started} ms: ${JSON.stringify(results)}, retried failures ${failures}; before the kill: ${JSON.stringify(summarize(first))}`,
      );
      assert.equal(results.RESERVED, rest.length, "every buyer served while etcd is down");
      const s = await stats(act.id);
      assert.equal(s.remaining, 0n + BigInt(300 - 250));
    } finally {
      await stack.infra.etcd.restart();
      console.log("etcd restarted");
    }
    // Every instance is registered again before the next test.
    const etcd = createEtcd(stack.infra.etcd.endpoints);
    try {
      const ms = await pollUntil(
        async () =>
          Object.keys(await etcd.getAll().prefix(SERVICES_PREFIX).strings()).length >=
          stack.instances.length,
        { timeoutMs: 30_000, intervalMs: 200, message: "every instance registered again" },
      );
      console.log(`registrations back ${ms} ms after the restart`);
    } finally {
      etcd.close();
    }
  });

  it("survives SIGKILL of one app and one core during a sale: at most a retry, no oversell, no lost or duplicated order", {
    timeout: 170_000,
  }, async () => {
    const STOCK = 500;
    const BUYERS = 1000;
    const users = await provision(BUYERS, "kill");
    const act = await createSale(c, admin, { stock: STOCK, perUserLimit: 1, startInMs: 1500 });
    await waitForStart(c, act);
    const tokens = await pool(users, 64, (u) => buyToken(c, u, act.id));

    let answered = 0;
    let killedAt = -1;
    const victims = ["seckill-app-1", "seckill-core-1"].map(
      (id) => stack.instances.find((i) => i.instanceId === id)!,
    );
    const killer = (async () => {
      while (answered < STOCK / 4) await sleep(5);
      killedAt = answered;
      for (const v of victims) v.process.kill("SIGKILL");
      console.log(`SIGKILL seckill-app-1 and seckill-core-1 after ${answered} answers`);
    })();
    const app2 = stack.instances.find((i) => i.instanceId === "seckill-app-2")!;
    const meshRetries = async () => ({
      gatewayToApp: await metricValue(gatewayMetricsPort, "seckill_mesh_retries_total", {
        service: "seckill-app",
      }),
      appToCore: await metricValue(app2.metricsPort, "seckill_mesh_retries_total", {
        service: "seckill-core",
      }),
    });
    const retriesBefore = await meshRetries();
    const started = Date.now();
    const attempts = await pool(users, 96, async (u, i) => {
      const a = await buy(c, u, act.id, tokens[i]!);
      answered++;
      return { ...a, user: u };
    });
    await killer;
    const ms = Date.now() - started;
    for (const v of victims) await v.process.exited;

    const retriesAfter = await meshRetries();
    console.log(
      `calls retried on another instance by the mesh: gateway → seckill-app ${retriesAfter.gatewayToApp - retriesBefore.gatewayToApp}, seckill-app-2 → seckill-core ${retriesAfter.appToCore - retriesBefore.appToCore}`,
    );
    const failures = attempts.map((a) => a.failures);
    const retriedBuyers = failures.filter((n) => n > 0).length;
    const maxFailures = Math.max(...failures);
    const results = summarize(attempts);
    console.log(
      `kill test: ${BUYERS} buyers in ${ms} ms (${((BUYERS * 1000) / ms).toFixed(0)}/s), killed after ${killedAt} answers: ${JSON.stringify(results)}; buyers who had to retry: ${retriedBuyers}, most retries by one buyer: ${maxFailures}; errors seen: ${JSON.stringify([...new Set(attempts.flatMap((a) => a.errors))].slice(0, 5))}`,
    );
    const told = attempts.filter((a) => a.res.result === BuyResult.RESERVED);
    const toldIds = new Set(told.map((a) => a.res.orderId));
    assert.equal(toldIds.size, told.length, "one order id per reservation");
    assert.ok(told.length <= STOCK, "no oversell");
    assert.equal(told.length, STOCK, "everything sold (buyers outnumber the stock)");
    assert.ok(maxFailures <= 1, `a buyer saw ${maxFailures} failures`);

    await drained(act.id, told.length);
    const rows = await stores.orders(act.id);
    const counters = await stores.counters(act.id);
    console.log(`after the drain: ${rows.length} order rows; core: ${JSON.stringify(counters)}`);
    assert.equal(rows.length, told.length, "no lost and no extra order row");
    assert.deepEqual(
      new Set(rows.map((r) => r.id)),
      toldIds,
      "exactly the orders buyers were told about",
    );
    assert.equal(
      new Set(rows.map((r) => r.request_id)).size,
      rows.length,
      "no request reserved twice",
    );
    const byRequest = new Map(told.map((a) => [a.requestId, a]));
    for (const r of rows) {
      const a = byRequest.get(r.request_id);
      assert.ok(
        a && a.res.orderId === r.id && a.user.userId === r.user_id,
        `row ${r.id} matches its buyer`,
      );
    }
    assert.equal(
      counters.stock + counters.reserved + counters.paid,
      counters.total,
      "conservation",
    );
    assert.equal(
      counters.reserved + counters.paid,
      rows.filter((r) => r.status !== "CANCELLED").reduce((n, r) => n + Number(r.quantity), 0),
      "core's counters match MySQL",
    );
    const reconcile = await c.admin.reconcile({ activityId: act.id }, { headers: admin.headers });
    assert.equal(reconcile.ok, true, JSON.stringify(reconcile.mismatches));
  });

  it("Reconcile over every activity reports zero mismatches after the sales", {
    timeout: 60_000,
  }, async () => {
    const res = await c.admin.reconcile({}, { headers: admin.headers, timeoutMs: 30_000 });
    console.log(
      `reconcile: ${res.checkedActivities} activities, ${res.mismatches.length} mismatches`,
    );
    assert.equal(res.ok, true, JSON.stringify(res.mismatches));
    assert.ok(res.checkedActivities >= 5, `checked ${res.checkedActivities}`);
  });
});
