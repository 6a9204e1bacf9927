import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLogger } from "../runtime/log.ts";
import { type EtcdServer, startEtcd } from "../stack/index.ts";
import { createEtcd, type Etcd3 } from "../stores/etcd.ts";
import { startServiceProcess } from "../testing/service-process.ts";
import { startTcpProxy } from "../testing/tcp-proxy.ts";
import { ServiceDiscovery } from "./discovery.ts";
import { instanceKey, type Registration, register, type ServiceInstance } from "./registry.ts";

const log = createLogger("registry-test", "silent");

const instance = (service: string, id: string, port = 7000): ServiceInstance => ({
  service,
  id,
  host: "127.0.0.1",
  port,
  weight: 1,
  zone: "local",
  version: "test",
});

/** Polls until `check` holds, returning how long it took. */
async function until(check: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

const ids = (d: ServiceDiscovery) => d.instances().map((i) => i.id);

describe("registry and discovery on a real etcd", () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd3;

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd(etcdServer.endpoints);
  });
  after(async () => {
    etcd?.close();
    await etcdServer?.stop();
  });

  it("shows a started instance to a watcher in under a second, and drops it on revoke", async () => {
    const discovery = new ServiceDiscovery(etcd, "svc-appear", log);
    await discovery.start();
    assert.deepEqual(ids(discovery), []);
    const started = Date.now();
    const registration = await register(etcd, instance("svc-appear", "a"), { ttlSeconds: 5, log });
    await until(() => ids(discovery).includes("a"), 1000, "the instance to appear");
    const appearedMs = Date.now() - started;
    assert.ok(appearedMs < 1000, `appeared after ${appearedMs} ms`);
    assert.equal(discovery.instances()[0]!.port, 7000);

    await registration.close();
    await until(() => ids(discovery).length === 0, 1000, "the revoked instance to disappear");
    await discovery.close();
  });

  it("follows weight changes and ignores malformed entries", async () => {
    const discovery = new ServiceDiscovery(etcd, "svc-weights", log);
    await discovery.start();
    const registration = await register(etcd, instance("svc-weights", "a"), { ttlSeconds: 5, log });
    await etcd.put(instanceKey("svc-weights", "broken")).value("{not json");
    await until(() => ids(discovery).includes("a"), 1000, "the instance");
    await registration.setWeight(7);
    await until(() => discovery.instances()[0]?.weight === 7, 1000, "the new weight");
    assert.deepEqual(ids(discovery), ["a"]);
    await registration.close();
    await etcd.delete().key(instanceKey("svc-weights", "broken"));
    await discovery.close();
  });

  it("drops an instance killed with SIGKILL within TTL + 1 s", async () => {
    const ttlSeconds = 2;
    const discovery = new ServiceDiscovery(etcd, "svc-killed", log);
    await discovery.start();
    const child = await startServiceProcess({
      entry: "services/shared/src/testing/echo-main.ts",
      env: {
        SERVICE_NAME: "svc-killed",
        INSTANCE_ID: "victim",
        ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
        REGISTRATION_TTL_SECONDS: String(ttlSeconds),
      },
    });
    await until(() => ids(discovery).includes("victim"), 1000, "the child to appear");
    child.kill("SIGKILL");
    await child.exited;
    const goneMs = await until(
      () => ids(discovery).length === 0,
      (ttlSeconds + 1) * 1000,
      "the killed child to disappear",
    );
    assert.ok(goneMs <= (ttlSeconds + 1) * 1000, `gone after ${goneMs} ms`);
    await discovery.close();
  });

  it("recovers from a compaction that happened while its watch was disconnected", async () => {
    const proxy = await startTcpProxy(etcdServer.clientPort);
    const proxied = createEtcd([`http://127.0.0.1:${proxy.port}`]);
    const discovery = new ServiceDiscovery(proxied, "svc-compact", log);
    await discovery.start();
    const first = await register(etcd, instance("svc-compact", "a"), { ttlSeconds: 10, log });
    await until(() => ids(discovery).includes("a"), 1000, "the first instance");

    proxy.cut();
    // While the watcher is away: one instance leaves, another arrives, history is compacted.
    await first.close();
    const second = await register(etcd, instance("svc-compact", "b"), { ttlSeconds: 10, log });
    const { header } = await etcd.put("/seckill/test/bump").value("1").exec();
    await etcd.kv.compact({ revision: header.revision, physical: true });
    assert.deepEqual(ids(discovery), ["a"], "keeps the last known list while cut off");

    proxy.resume();
    await until(
      () => ids(discovery).join() === "b",
      8000,
      "the watcher to re-read after compaction",
    );
    await second.close();
    await discovery.close();
    proxied.close();
    await proxy.close();
  });

  it("keeps the last list while etcd is down and loses no registration for good across a restart", async () => {
    const ttlSeconds = 2;
    const discovery = new ServiceDiscovery(etcd, "svc-restart", log);
    await discovery.start();
    const registration: Registration = await register(etcd, instance("svc-restart", "survivor"), {
      ttlSeconds,
      log,
    });
    await until(() => ids(discovery).includes("survivor"), 1000, "the instance");

    await etcdServer.kill("SIGKILL");
    // Longer than the TTL, so the lease cannot be kept alive through the outage.
    await new Promise((r) => setTimeout(r, (ttlSeconds + 1) * 1000));
    assert.deepEqual(ids(discovery), ["survivor"], "the last known list survives the outage");

    await etcdServer.restart();
    const fresh = createEtcd(etcdServer.endpoints);
    const registeredAgain = async () =>
      (await fresh.get(instanceKey("svc-restart", "survivor")).string()) !== null;
    const started = Date.now();
    while (!(await registeredAgain().catch(() => false))) {
      if (Date.now() - started > 10_000)
        assert.fail("the instance did not register again within 10 s of the restart");
      await new Promise((r) => setTimeout(r, 100));
    }
    // And it stays: wait past another TTL to be sure the key is on a live lease.
    await new Promise((r) => setTimeout(r, (ttlSeconds + 1) * 1000));
    assert.equal(await registeredAgain(), true);
    await until(
      () => ids(discovery).includes("survivor"),
      5000,
      "the watcher to see it after the restart",
    );
    await registration.close();
    fresh.close();
    await discovery.close();
  });
});
