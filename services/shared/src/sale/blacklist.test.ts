import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLogger } from "../runtime/log.ts";
import { type RedisServer, startRedis } from "../stack/index.ts";
import { createRedis, type Redis } from "../stores/redis.ts";
import { BlacklistCache, putBlacklistEntry, removeBlacklistEntry } from "./blacklist.ts";

const log = createLogger("blacklist-test", "silent");

describe("BlacklistCache on a real Redis", () => {
  let server: RedisServer;
  let writer: Redis;
  const connections: Redis[] = [];
  before(async () => {
    server = await startRedis();
    writer = createRedis(server.url, log);
  });
  after(async () => {
    for (const c of [writer, ...connections]) c.disconnect();
    await server.stop();
  });

  it("sees an entry written by another client within a second, and its removal", async () => {
    const reader = createRedis(server.url, log);
    const subscriber = createRedis(server.url, log);
    connections.push(reader, subscriber);
    const cache = new BlacklistCache(reader, subscriber, log, 60_000); // only pub/sub can make it fast
    await cache.start();
    assert.equal(cache.isBlocked("user", "mallory"), false);

    const started = Date.now();
    await putBlacklistEntry(writer, "user", "mallory", { reason: "bot", expiresAtMs: 0 });
    while (!cache.isBlocked("user", "mallory")) {
      assert.ok(Date.now() - started < 1000, "not blocked within a second");
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(cache.isBlocked("ip", "mallory"), false, "kinds are separate");

    await removeBlacklistEntry(writer, "user", "mallory");
    while (cache.isBlocked("user", "mallory")) {
      assert.ok(Date.now() - started < 2000, "not unblocked within a second");
      await new Promise((r) => setTimeout(r, 5));
    }
    await cache.stop();
  });

  it("honours expiry and keeps its copy while Redis is unreachable", async () => {
    const reader = createRedis(server.url, log, { maxRetriesPerRequest: 0 });
    const subscriber = createRedis(server.url, log);
    connections.push(reader, subscriber);
    await putBlacklistEntry(writer, "ip", "10.0.0.1", {
      reason: "abuse",
      expiresAtMs: Date.now() + 200,
    });
    await putBlacklistEntry(writer, "ip", "10.0.0.2", { reason: "abuse", expiresAtMs: 0 });
    const cache = new BlacklistCache(reader, subscriber, log, 50);
    await cache.start();
    assert.equal(cache.isBlocked("ip", "10.0.0.1"), true);
    assert.equal(cache.isBlocked("ip", "10.0.0.1", Date.now() + 300), false, "expired");

    reader.disconnect();
    await cache.reload();
    assert.equal(cache.isBlocked("ip", "10.0.0.2"), true, "the last copy stays");
    await cache.stop();
  });
});
