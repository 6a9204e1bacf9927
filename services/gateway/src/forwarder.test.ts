import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AdminService } from "../../gen/seckill/admin/v1/admin_pb.ts";
import { SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import { BuyResult, OrderStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { OrderService } from "../../gen/seckill/order/v1/order_pb.ts";
import { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { expectCode } from "../../shared/src/testing/codes.ts";
import {
  CLIENT_IP_HEADER,
  USER_ID_HEADER,
  USER_ROLE_HEADER,
} from "../../shared/src/transport/identity.ts";
import { resolvePolicy } from "./forwarder.ts";
import { publicServices } from "./routes.ts";
import { RecentKeys } from "./sold-out.ts";
import { bearer, type EdgeUnderTest, edgeUnderTest, tokens } from "./testing/fakes.ts";

const edges: EdgeUnderTest[] = [];
const setup = (opts?: Parameters<typeof edgeUnderTest>[0]) => {
  const edge = edgeUnderTest(opts);
  edges.push(edge);
  return edge;
};
after(() => {
  for (const e of edges) e.close();
});

describe("forwarder: identity", () => {
  it("forwards a public call with the client IP and no identity", async () => {
    const { clients, upstreams } = setup();
    await clients.app.listActivities({}, { headers: { "x-forwarded-for": "203.0.113.9" } });
    const [seen] = upstreams.callsTo("ListActivities");
    assert.ok(seen);
    assert.equal(seen.headers.get(CLIENT_IP_HEADER), "203.0.113.9");
    assert.equal(seen.headers.get(USER_ID_HEADER), null);
  });

  it("strips identity headers a client sends, on public and protected calls", async () => {
    const { clients, upstreams } = setup();
    const spoof = { [USER_ID_HEADER]: "victim", [USER_ROLE_HEADER]: "admin" };
    await clients.app.getServerTime({}, { headers: spoof });
    assert.equal(upstreams.callsTo("GetServerTime")[0]?.headers.get(USER_ID_HEADER), null);
    const me = await clients.auth.getMe(
      {},
      { headers: { ...spoof, ...bearer(await tokens.user("u-7")) } },
    );
    assert.equal(me.user?.id, "u-7");
    const seen = upstreams.callsTo("GetMe")[0]!;
    assert.equal(seen.headers.get(USER_ID_HEADER), "u-7");
    assert.equal(seen.headers.get(USER_ROLE_HEADER), "user");
  });

  it("refuses protected calls without a valid access token, before any upstream call", async () => {
    const { clients, upstreams } = setup();
    const buy = { activityId: "a", quantity: 1, buyToken: "t", requestId: "r1" };
    await expectCode(clients.app.buy(buy), Code.Unauthenticated, /missing access token/);
    await expectCode(
      clients.app.buy(buy, { headers: { authorization: "Basic abc" } }),
      Code.Unauthenticated,
    );
    await expectCode(
      clients.app.buy(buy, { headers: bearer("not.a.jwt") }),
      Code.Unauthenticated,
      /malformed/,
    );
    await expectCode(
      clients.app.buy(buy, { headers: bearer(await tokens.expired()) }),
      Code.Unauthenticated,
      /expired/,
    );
    await expectCode(
      clients.app.buy(buy, { headers: bearer(await tokens.forged()) }),
      Code.Unauthenticated,
      /signature/,
    );
    await expectCode(
      clients.app.buy(buy, { headers: bearer(await tokens.refresh()) }),
      Code.Unauthenticated,
      /not an access token/,
    );
    assert.equal(upstreams.callsTo("Buy").length, 0);
  });

  it("refuses a user token on admin methods with PERMISSION_DENIED; admins pass with their role", async () => {
    const { clients, upstreams } = setup();
    await expectCode(
      clients.admin.getStats({ activityId: "a" }, { headers: bearer(await tokens.user()) }),
      Code.PermissionDenied,
      /admin role required/,
    );
    await expectCode(
      clients.auth.provisionUsers({ count: 1 }, { headers: bearer(await tokens.user()) }),
      Code.PermissionDenied,
    );
    assert.equal(upstreams.seen.filter((s) => s.service === AdminService.typeName).length, 0);
    const stats = await clients.admin.getStats(
      { activityId: "a" },
      { headers: bearer(await tokens.admin("boss")) },
    );
    assert.equal(stats.total, 10n);
    const seen = upstreams.callsTo("GetStats")[0]!;
    assert.equal(seen.headers.get(USER_ID_HEADER), "boss");
    assert.equal(seen.headers.get(USER_ROLE_HEADER), "admin");
  });

  it("refuses a body user_id different from the token's with INVALID_ARGUMENT, changing nothing", async () => {
    const { clients, upstreams } = setup();
    const headers = bearer(await tokens.user("alice"));
    await expectCode(
      clients.app.buy(
        { activityId: "a", quantity: 1, buyToken: "t", requestId: "r", userId: "bob" },
        { headers },
      ),
      Code.InvalidArgument,
      /does not match/,
    );
    await expectCode(
      clients.app.getBuyToken({ activityId: "a", userId: "bob" }, { headers }),
      Code.InvalidArgument,
    );
    assert.equal(upstreams.seen.length, 1, "only the key fetch reached an upstream");
    const ok = await clients.app.buy(
      { activityId: "a", quantity: 1, buyToken: "t", requestId: "r", userId: "alice" },
      { headers },
    );
    assert.equal(ok.result, BuyResult.RESERVED);
  });

  it("has a policy for every method, and enforces it", async () => {
    const { clients, upstreams } = setup();
    const userHeaders = bearer(await tokens.user());
    await clients.auth.getMe({}, { headers: userHeaders }); // fetches the keys once
    const byService = {
      [AuthService.typeName]: clients.auth,
      [SeckillAppService.typeName]: clients.app,
      [OrderService.typeName]: clients.order,
      [AdminService.typeName]: clients.admin,
    } as Record<string, Record<string, (req: object, opts?: object) => unknown>>;
    const services = publicServices({
      flags: new SoldOutFlags(0),
      recent: new RecentKeys(1, 1),
    });
    let checked = 0;
    for (const spec of services) {
      for (const method of spec.service.methods) {
        const policy = resolvePolicy(
          (spec.policy as Record<string, Parameters<typeof resolvePolicy>[0]>)[method.localName]!,
        );
        const client = byService[spec.service.typeName]![method.localName]!;
        const call = async (opts?: object) => {
          const res = client({}, opts);
          if (method.methodKind === "server_streaming") {
            for await (const _ of res as AsyncIterable<unknown>) break;
          } else await res;
        };
        const before = upstreams.seen.length;
        if (policy.access === "public") {
          // Reaches the upstream (whatever the fake answers).
          await call().catch(() => {});
          assert.equal(upstreams.seen.length, before + 1, `${method.name} should be forwarded`);
        } else {
          await expectCode(call(), Code.Unauthenticated);
          if (policy.access === "admin")
            await expectCode(call({ headers: userHeaders }), Code.PermissionDenied);
          assert.equal(upstreams.seen.length, before, `${method.name} must not be forwarded`);
        }
        checked++;
      }
    }
    const expected =
      AuthService.methods.length +
      SeckillAppService.methods.length +
      OrderService.methods.length +
      AdminService.methods.length;
    assert.equal(checked, expected);
  });
});

describe("forwarder: calls", () => {
  it("passes the remaining client deadline upstream, capped by the edge's own", async () => {
    const { clients, upstreams } = setup();
    await clients.app.getServerTime({}, { timeoutMs: 800 });
    await clients.app.getServerTime({});
    const [withDeadline, without] = upstreams.callsTo("GetServerTime");
    assert.ok(withDeadline!.timeoutMs! <= 800 && withDeadline!.timeoutMs! > 0);
    assert.ok(without!.timeoutMs! <= 10_000 && without!.timeoutMs! > 800);
  });

  it("returns upstream errors with their code and message, and only safe metadata", async () => {
    const { clients, upstreams } = setup();
    upstreams.buyError = new ConnectError("shed", Code.ResourceExhausted, {
      "retry-after-ms": "250",
      "x-internal-instance": "app-2",
    });
    await assert.rejects(
      clients.app.buy(
        { activityId: "a", quantity: 1, buyToken: "t", requestId: "r" },
        { headers: bearer(await tokens.user()) },
      ),
      (err: ConnectError) => {
        assert.equal(err.code, Code.ResourceExhausted);
        assert.equal(err.rawMessage, "shed");
        assert.equal(err.metadata.get("retry-after-ms"), "250");
        assert.equal(err.metadata.get("x-internal-instance"), null);
        return true;
      },
    );
    await expectCode(clients.app.getActivity({ activityId: "nope" }), Code.NotFound, /nope/);
  });

  it("answers UNAVAILABLE when an upstream has no instance", async () => {
    const { clients, upstreams } = setup();
    const original = upstreams.transport;
    upstreams.transport = () => {
      throw new ConnectError("seckill-app: no instance is registered", Code.Unavailable);
    };
    try {
      await expectCode(clients.app.listActivities({}), Code.Unavailable, /no instance/);
    } finally {
      upstreams.transport = original;
    }
  });

  it("forwards a server stream message by message with the caller's identity", async () => {
    const { clients, upstreams } = setup();
    const statuses: OrderStatus[] = [];
    for await (const m of clients.order.watchOrder(
      { orderId: "o1" },
      { headers: bearer(await tokens.user("u-9")) },
    )) {
      statuses.push(m.order!.status);
    }
    assert.deepEqual(statuses, [
      OrderStatus.CREATING,
      OrderStatus.PENDING_PAYMENT,
      OrderStatus.PAID,
    ]);
    assert.equal(upstreams.callsTo("WatchOrder")[0]?.headers.get(USER_ID_HEADER), "u-9");
  });

  it("cancels the upstream stream when the client goes away", async () => {
    const { clients, upstreams } = setup();
    upstreams.watchIntervalMs = 5_000;
    const abort = new AbortController();
    const stream = clients.order.watchOrder(
      { orderId: "o1" },
      { headers: bearer(await tokens.user()), signal: abort.signal },
    );
    for await (const _ of stream) {
      abort.abort();
      break;
    }
    const signal = upstreams.watchSignals[0]!;
    for (let i = 0; i < 100 && !signal.aborted; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(signal.aborted, "upstream stream still running");
  });

  it("ends forwarded streams with UNAVAILABLE when the edge shuts down", async () => {
    const { clients, upstreams, shutdown } = setup();
    upstreams.watchIntervalMs = 5_000;
    const stream = clients.order.watchOrder(
      { orderId: "o1" },
      { headers: bearer(await tokens.user()) },
    );
    await expectCode(
      (async () => {
        for await (const _ of stream) {
          shutdown.abort(new ConnectError("the gateway is shutting down", Code.Unavailable));
        }
      })(),
      Code.Unavailable,
      /shutting down/,
    );
  });
});

describe("forwarder: sold-out short-circuit", () => {
  const buy = (requestId: string, activityId = "act-1") => ({
    activityId,
    quantity: 1,
    buyToken: "t",
    requestId,
  });

  it("answers SOLD_OUT at the edge once an answer said so, until the TTL or a restock", async () => {
    const { clients, upstreams, clock, flags } = setup({ soldOutTtlMs: 1000 });
    const headers = bearer(await tokens.user());
    upstreams.buyAnswers.push({ result: BuyResult.RESERVED, orderId: "o-last", soldOut: true });
    const last = await clients.app.buy(buy("r-last"), { headers });
    assert.equal(last.result, BuyResult.RESERVED);
    assert.deepEqual((await clients.gateway.getEdgeStatus({})).soldOutActivityIds, ["act-1"]);

    const late = await clients.app.buy(buy("r-late"), { headers });
    assert.equal(late.result, BuyResult.SOLD_OUT);
    assert.equal(late.soldOut, true);
    assert.equal(upstreams.callsTo("Buy").length, 1, "answered at the edge");

    // Another activity is not affected.
    assert.equal(
      (await clients.app.buy(buy("r-other", "act-2"), { headers })).result,
      BuyResult.RESERVED,
    );

    // A retry of a request id forwarded before still gets its original answer upstream.
    const retry = await clients.app.buy(buy("r-last"), { headers });
    assert.equal(retry.result, BuyResult.RESERVED);
    assert.equal(upstreams.callsTo("Buy").length, 3);

    // The TTL ends the flag.
    clock.now += 1001;
    assert.equal(
      (await clients.app.buy(buy("r-after-ttl"), { headers })).result,
      BuyResult.RESERVED,
    );

    // A restock message clears it at once.
    upstreams.buyAnswers.push({ result: BuyResult.SOLD_OUT, soldOut: true });
    assert.equal((await clients.app.buy(buy("r-so"), { headers })).result, BuyResult.SOLD_OUT);
    const before = upstreams.callsTo("Buy").length;
    await clients.app.buy(buy("r-so-2"), { headers });
    assert.equal(upstreams.callsTo("Buy").length, before, "short-circuited");
    flags.clear("act-1");
    await clients.app.buy(buy("r-restocked"), { headers });
    assert.equal(upstreams.callsTo("Buy").length, before + 1);
  });

  it("still authenticates before answering SOLD_OUT", async () => {
    const { clients, flags } = setup();
    flags.mark("act-1");
    await expectCode(clients.app.buy(buy("r1")), Code.Unauthenticated);
  });
});
