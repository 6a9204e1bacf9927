/**
 * k8s/: the dev manifests build with kustomize, validate against the Kubernetes schemas, and
 * provide what the chart's dev values expect (Secrets and keys, store hosts and ports).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import {
  buildKustomization,
  chartDir,
  type K8sObject,
  matches,
  podSpec,
  renderChart,
  repoRoot,
  unknownFields,
  validateObject,
} from "./kube.ts";

describe("k8s/ dev manifests", () => {
  let objects: K8sObject[];
  before(async () => {
    objects = await buildKustomization(join(repoRoot, "k8s"));
  });

  it("build and validate against the Kubernetes schemas", async () => {
    const kinds = objects.map((o) => o.kind).sort();
    assert.deepEqual(
      [...new Set(kinds)],
      ["Secret", "Service", "StatefulSet"],
      `kinds: ${kinds.join(", ")}`,
    );
    const errors: string[] = [];
    for (const obj of objects) await validateObject(obj).catch((e) => errors.push(e.message));
    assert.deepEqual(errors, []);
    assert.deepEqual(unknownFields(objects), []);
  });

  it("run Redis with AOF, MariaDB and etcd on volumes, non-root", () => {
    const sets = objects.filter((o) => o.kind === "StatefulSet");
    assert.deepEqual(sets.map((s) => s.metadata.name).sort(), [
      "seckill-etcd",
      "seckill-mariadb",
      "seckill-redis",
    ]);
    for (const s of sets) {
      assert.equal(podSpec(s).securityContext.runAsNonRoot, true, s.metadata.name);
      assert.equal(s.spec.volumeClaimTemplates.length, 1, s.metadata.name);
      assert.ok(podSpec(s).containers[0].readinessProbe, `${s.metadata.name}: readiness`);
      const svc = objects.find(
        (o) => o.kind === "Service" && o.metadata.name === s.spec.serviceName,
      );
      assert.ok(
        svc && matches(svc.spec.selector, s.spec.template.metadata.labels),
        s.metadata.name,
      );
    }
    const redisArgs: string[] = podSpec(sets.find((s) => s.metadata.name === "seckill-redis")!)
      .containers[0].args;
    assert.equal(redisArgs[redisArgs.indexOf("--appendonly") + 1], "yes");
  });

  for (const values of ["dev-values.yaml", "loadtest-values.yaml"]) {
    it(`hold every Secret key and store the chart uses with ci/${values}`, async () => {
      const files = [join(chartDir, "ci", "dev-values.yaml"), join(chartDir, "ci", values)];
      const chart = await renderChart([...new Set(files)]);
      const secrets = new Map(
        objects
          .filter((o) => o.kind === "Secret")
          .map((s) => [s.metadata.name, { ...s.data, ...s.stringData }] as const),
      );
      const refs = JSON.stringify(chart).matchAll(
        /"secretKeyRef":\{"name":"([^"]+)","key":"([^"]+)"\}/g,
      );
      let count = 0;
      for (const [, name, key] of refs) {
        count++;
        assert.ok(secrets.get(name!)?.[key!] !== undefined, `Secret ${name} has no key ${key}`);
      }
      assert.ok(count > 0);
      const decode = (name: string, key: string) =>
        Buffer.from(secrets.get(name)![key]!, "base64").toString("utf8");
      const config = chart.find((o) => o.kind === "ConfigMap")!.data;
      const targets = [
        ...config.ETCD_ENDPOINTS.split(","),
        config.REDIS_URL,
        decode("seckill-mysql", "MYSQL_URI"),
      ];
      for (const target of targets) {
        const url = new URL(target);
        const svc = objects.find((o) => o.kind === "Service" && o.metadata.name === url.hostname);
        assert.ok(svc, `no Service ${url.hostname} for ${url.protocol}`);
        assert.ok(
          svc.spec.ports.some((p: { port: number }) => String(p.port) === url.port),
          `${url.hostname} has no port ${url.port}`,
        );
      }
      // The MariaDB account the chart's URI logs in with is the one the server creates.
      const uri = new URL(decode("seckill-mysql", "MYSQL_URI"));
      assert.equal(uri.username, decode("seckill-mariadb", "MARIADB_USER"));
      assert.equal(decodeURIComponent(uri.password), decode("seckill-mariadb", "MARIADB_PASSWORD"));
      assert.equal(uri.pathname.slice(1), decode("seckill-mariadb", "MARIADB_DATABASE"));
    });
  }
});
