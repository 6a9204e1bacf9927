import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { clientIp, normalizeIp } from "./client-ip.ts";
import { EdgeLimiter, KeyedBuckets, TokenBucket } from "./limits.ts";
import { RecentKeys } from "./sold-out.ts";
import { bearer, type EdgeUnderTest, edgeUnderTest, tokens } from "./testing/fakes.ts";
import { cachingVerifier } from "./token-cache.ts";

const edges: EdgeUnderTest[] = [];
const setup = (opts?: Parameters<typeof edgeUnderTest>[0]) => {
  const edge = edgeUnderTest(opts);
  edges.push(edge);
  return edge;
};
after(() => {
  for (const e of edges) e.close();
});

const from = (ip: string) => ({ headers: { "x-forwarded-for": ip } });

describe("token buckets", () => {
  it("allows a burst, then refuses with the time until the next token", () => {
    const b = new TokenBucket(10, 3, 0);
    for (let i = 0; i < 3; i++) assert.equal(b.take(0).ok, true);
    const refused = b.take(0);
    assert.equal(refused.ok, false);
    assert.equal(refused.retryAfterMs, 100);
    assert.equal(b.take(50).retryAfterMs, 50);
    assert.equal(b.take(100).ok, true);
    assert.equal(b.take(100).ok, false);
    assert.equal(b.isFull(1000), true, "refills up to the burst");
  });

  it("keeps one bucket per key and bounds how many it tracks", () => {
    const buckets = new KeyedBuckets("ip", 1, 1, 100);
    assert.equal(buckets.take("a", 0).ok, true);
    assert.equal(buckets.take("a", 0).ok, false);
    assert.equal(buckets.take("b", 0).ok, true);
    for (let i = 0; i < 500; i++) buckets.take(`k${i}`, 0);
    assert.ok(buckets.size <= 100, `tracks ${buckets.size}`);
    // Full buckets are forgotten first: a refilled key starts over with a full bucket.
    buckets.sweep(10_000);
    assert.equal(buckets.size, 0);
  });

  it("refuses a flooding IP by its own bucket without draining the instance's", () => {
    let now = 0;
    const limiter = new EdgeLimiter(
      {
        ip: { ratePerSecond: 1, burst: 2, maxKeys: 100 },
        global: { ratePerSecond: 1, burst: 5 },
        user: { ratePerSecond: 0, burst: 1, maxKeys: 100 },
      },
      () => now,
    );
    try {
      assert.equal(limiter.admitClient("1.1.1.1"), undefined);
      assert.equal(limiter.admitClient("1.1.1.1"), undefined);
      for (let i = 0; i < 10; i++) assert.equal(limiter.admitClient("1.1.1.1")?.kind, "ip");
      // 3 global tokens left for the others.
      for (const ip of ["2.2.2.2", "3.3.3.3", "4.4.4.4"])
        assert.equal(limiter.admitClient(ip), undefined);
      const global = limiter.admitClient("5.5.5.5");
      assert.equal(global?.kind, "global");
      assert.equal(global?.retryAfterMs, 1000);
      now += 1000;
      assert.equal(limiter.admitClient("5.5.5.5"), undefined);
      assert.equal(limiter.admitUser("anyone"), undefined, "per-user limit off");
    } finally {
      limiter.close();
    }
  });
});

describe("client IP", () => {
  it("uses the peer address unless proxies are trusted", () => {
    assert.equal(clientIp("::ffff:10.1.2.3", "6.6.6.6", 0), "10.1.2.3");
    assert.equal(clientIp("10.0.0.1", "6.6.6.6, 203.0.113.7", 1), "203.0.113.7");
    assert.equal(clientIp("10.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.9", 2), "203.0.113.7");
    assert.equal(clientIp("10.0.0.1", "[2001:db8::1]:443", 1), "2001:db8::1");
    assert.equal(clientIp("10.0.0.1", "198.51.100.1:1234", 1), "198.51.100.1");
    assert.equal(clientIp("10.0.0.1", null, 1), "10.0.0.1", "no header: the peer");
    assert.equal(clientIp("10.0.0.1", "not-an-ip", 1), "10.0.0.1", "garbage: the peer");
    assert.equal(normalizeIp("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
    assert.equal(normalizeIp("::FFFF:10.0.0.1"), "10.0.0.1");
  });
});

describe("the gate: limits and blacklist", () => {
  it("answers RESOURCE_EXHAUSTED with a retry hint per IP; other IPs still pass", async () => {
    const { clients, upstreams } = setup({
      limits: { ip: { ratePerSecond: 1, burst: 2, maxKeys: 100 } },
    });
    await clients.app.getServerTime({}, from("198.51.100.1"));
    await clients.app.getServerTime({}, from("198.51.100.1"));
    await assert.rejects(
      clients.app.getServerTime({}, from("198.51.100.1")),
      (err: ConnectError) => {
        assert.equal(err.code, Code.ResourceExhausted);
        assert.match(err.rawMessage, /this client address/);
        assert.equal(err.metadata.get("retry-after-ms"), "1000");
        return true;
      },
    );
    await clients.app.getServerTime({}, from("198.51.100.2"));
    assert.equal(upstreams.callsTo("GetServerTime").length, 3);
  });

  it("limits before verifying tokens (a refused call costs no signature check)", async () => {
    const { clients, upstreams } = setup({
      limits: { global: { ratePerSecond: 1, burst: 1 } },
    });
    await clients.app.getServerTime({});
    await assert.rejects(
      clients.app.buy({ activityId: "a" }, { headers: bearer("garbage") }),
      (err: ConnectError) => err.code === Code.ResourceExhausted,
    );
    assert.equal(upstreams.callsTo("GetPublicKeys").length, 0);
  });

  it("applies the optional per-user limit after authentication", async () => {
    const { clients } = setup({ limits: { user: { ratePerSecond: 1, burst: 1, maxKeys: 10 } } });
    const alice = bearer(await tokens.user("alice"));
    await clients.app.getBuyToken({ activityId: "a" }, { headers: alice });
    await assert.rejects(
      clients.app.getBuyToken({ activityId: "a" }, { headers: alice }),
      (err: ConnectError) =>
        err.code === Code.ResourceExhausted && /this user/.test(err.rawMessage),
    );
    await clients.app.getBuyToken(
      { activityId: "a" },
      { headers: bearer(await tokens.user("bob")) },
    );
  });

  it("refuses blacklisted IPs with PERMISSION_DENIED, except on admin methods", async () => {
    const { clients, upstreams } = setup({ blockedIps: ["203.0.113.66"] });
    const blocked = from("203.0.113.66");
    await assert.rejects(clients.app.listActivities({}, blocked), (err: ConnectError) => {
      assert.equal(err.code, Code.PermissionDenied);
      return true;
    });
    await assert.rejects(
      clients.app.buy(
        { activityId: "a" },
        { headers: { ...blocked.headers, ...bearer(await tokens.user()) } },
      ),
      (err: ConnectError) => err.code === Code.PermissionDenied,
    );
    assert.equal(upstreams.callsTo("ListActivities").length, 0);
    const stats = await clients.admin.getStats(
      { activityId: "a" },
      { headers: { ...blocked.headers, ...bearer(await tokens.admin()) } },
    );
    assert.equal(stats.total, 10n);
    await clients.app.listActivities({}, from("203.0.113.67"));
  });
});

describe("sold-out flags and recent request ids", () => {
  it("flags expire after the TTL; a TTL of 0 turns them off", () => {
    let now = 0;
    const flags = new SoldOutFlags(1000, () => now);
    flags.mark("a");
    assert.deepEqual(flags.list(), ["a"]);
    now = 999;
    assert.equal(flags.has("a"), true);
    now = 1000;
    assert.equal(flags.has("a"), false);
    const off = new SoldOutFlags(0);
    off.mark("a");
    assert.equal(off.has("a"), false);
  });

  it("remembers at most max keys, each for the TTL", () => {
    let now = 0;
    const recent = new RecentKeys(3, 100, () => now);
    for (const k of ["a", "b", "c", "d"]) recent.add(k);
    assert.equal(recent.has("a"), false, "evicted");
    assert.equal(recent.has("d"), true);
    now = 100;
    assert.equal(recent.has("d"), false, "expired");
  });
});

describe("verified token cache", () => {
  const access = (expiresAt: number) => ({
    userId: "u",
    role: "user" as const,
    tokenId: "j",
    expiresAt: new Date(expiresAt),
  });

  it("verifies each token once until it expires or the max age, and never caches refusals", async () => {
    let now = 1_000_000;
    let calls = 0;
    const verifier = cachingVerifier(
      {
        async verify(token) {
          calls++;
          if (token.startsWith("bad")) throw new ConnectError("bad", Code.Unauthenticated);
          return access(token === "short" ? now + 500 : now + 3_600_000);
        },
      },
      { maxEntries: 2, maxAgeMs: 60_000, now: () => now },
    );
    await verifier.verify("a");
    await verifier.verify("a");
    assert.equal(calls, 1, "second check from the cache");
    await verifier.verify("a2");
    assert.equal(calls, 2, "another string is another token");
    await assert.rejects(verifier.verify("bad"));
    await assert.rejects(verifier.verify("bad"));
    assert.equal(calls, 4, "refusals are checked every time");
    await verifier.verify("short");
    now += 500;
    await verifier.verify("short");
    assert.equal(calls, 6, "an expired token is verified again (and refused by the real verifier)");
    now += 60_000;
    await verifier.verify("a2");
    assert.equal(calls, 7, "max age");
    await verifier.verify("a");
    assert.equal(calls, 8, "evicted: at most 2 entries");
  });
});
