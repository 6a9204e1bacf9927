import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLogger } from "../runtime/log.ts";
import { type EtcdServer, startEtcd } from "../stack/index.ts";
import { createEtcd, type Etcd3 } from "../stores/etcd.ts";
import { pollUntil } from "../testing/poll.ts";
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
    await pollUntil(() => ids(discovery).includes("a"), {
      timeoutMs: 1000,
      message: "the instance to appear",
    });
    const appearedMs = Date.now() - started;
    assert.ok(appearedMs < 1000, `appeared after ${appearedMs} ms`);
    assert.equal(discovery.instances()[0]!.port, 7000);

    await registration.close();
    await pollUntil(() => ids(discovery).length === 0, {
      timeoutMs: 1000,
      message: "the revoked instance to disappear",
    });
    await discovery.close();
  });

  it("follows weight changes and ignores malformed entries", async () => {
    const discovery = new ServiceDiscovery(etcd, "svc-weights", log);
    await discovery.start();
    const registration = await register(etcd, instance("svc-weights", "a"), { ttlSeconds: 5, log });
    await etcd.put(instanceKey("svc-weights", "broken")).value("{not json");
    await pollUntil(() => ids(discovery).includes("a"), {
      timeoutMs: 1000,
      message: "the instance",
    });
    await registration.setWeight(7);
    await pollUntil(() => discovery.instances()[0]?.weight === 7, {
      timeoutMs: 1000,
      message: "the new weight",
    });
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
    await pollUntil(() => ids(discovery).includes("victim"), {
      timeoutMs: 1000,
      message: "the child to appear",
    });
    child.kill("SIGKILL");
    await child.exited;
    const goneMs = await pollUntil(() => ids(discovery).length === 0, {
      timeoutMs: (ttlSeconds + 1) * 1000,
      message: "the killed child to disappear",
    });
    assert.ok(goneMs <= (ttlSeconds + 1) * 1000, `gone after ${goneMs} ms`);
    await discovery.close();
  });

  it("recovers from a compaction that happened while its watch was disconnected", async () => {
    const proxy = await startTcpProxy(etcdServer.clientPort);
    const proxied = createEtcd([`http://127.0.0.1:${proxy.port}`]);
    const discovery = new ServiceDiscovery(proxied, "svc-compact", log);
    await discovery.start();
    const first = await register(etcd, instance("svc-compact", "a"), { ttlSeconds: 10, log });
    await pollUntil(() => ids(discovery).includes("a"), {
      timeoutMs: 1000,
      message: "the first instance",
    });

    proxy.cut();
    // While the watcher is away: one instance leaves, another arrives, history is compacted.
    await first.close();
    const second = await register(etcd, instance("svc-compact", "b"), { ttlSeconds: 10, log });
    const { header } = await etcd.put("/seckill/test/bump").value("1").exec();
    await etcd.kv.compact({ revision: header.revision, physical: true });
    assert.deepEqual(ids(discovery), ["a"], "keeps the last known list while cut off");

    proxy.resume();
    await pollUntil(() => ids(discovery).join() === "b", {
      timeoutMs: 8000,
      message: "the watcher to re-read after compaction",
    });
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
    await pollUntil(() => ids(discovery).includes("survivor"), {
      timeoutMs: 1000,
      message: "the instance",
    });

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
    await pollUntil(() => ids(discovery).includes("survivor"), {
      timeoutMs: 5000,
      message: "the watcher to see it after the restart",
    });
    await registration.close();
    fresh.close();
    await discovery.close();
  });
});
