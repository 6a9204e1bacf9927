/**
 * charts/seckill: helm lint --strict and helm template for every ci/*-values.yaml, every
 * rendered object validated against the Kubernetes schemas, and the rules a reviewer would
 * check by hand (probes, security, resources, selectors, HPA targets, hook order, shutdown
 * timing), plus the values the schema and the templates must refuse.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { adminConfigSchema } from "../../services/admin/src/config.ts";
import { authConfigSchema } from "../../services/auth/src/config.ts";
import { gatewayConfigSchema } from "../../services/gateway/src/config.ts";
import { orderConfigSchema } from "../../services/order/src/config.ts";
import { appConfigSchema } from "../../services/seckill-app/src/config.ts";
import { coreConfigSchema } from "../../services/seckill-core/src/config.ts";
import {
  ORDER_CONSUMER_GROUP,
  orderIntentStream,
} from "../../services/shared/src/data-plane/order-intent.ts";
import {
  chartDir,
  ciValuesFiles,
  helm,
  type K8sObject,
  matches,
  podSpec,
  renderChart,
  repoRoot,
  SERVICES,
  templateChart,
  unknownFields,
  validateObject,
} from "./kube.ts";

const COMPONENT = "app.kubernetes.io/component";
const byKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
const isHook = (o: K8sObject) => Boolean(o.metadata.annotations?.["helm.sh/hook"]);

// biome-ignore lint/suspicious/noExplicitAny: containers of rendered manifests
type Container = any;
const mainContainer = (d: K8sObject): Container => podSpec(d).containers[0];
const envValue = (c: Container, name: string): string | undefined =>
  c.env?.find((e: { name: string }) => e.name === name)?.value;

/** Renders each ci values file once; tests share the result. */
const rendered = new Map<string, Promise<K8sObject[]>>();
function renderCi(file: string): Promise<K8sObject[]> {
  let r = rendered.get(file);
  if (!r) {
    r = renderChart([file]);
    rendered.set(file, r);
  }
  return r;
}

describe("helm lint --strict", () => {
  for (const file of ciValuesFiles) {
    it(`passes with ci/${basename(file)}`, async () => {
      const res = await helm(["lint", "--strict", chartDir, "-f", file]);
      assert.ok(res.ok, `helm lint failed:\n${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout, /0 chart\(s\) failed/);
    });
  }
});

it("renders no field the Kubernetes API does not define, with any ci values", async () => {
  const objects = (await Promise.all(ciValuesFiles.map(renderCi))).flat();
  assert.deepEqual(unknownFields(objects), []);
});

for (const file of ciValuesFiles) {
  describe(`helm template with ci/${basename(file)}`, () => {
    it("renders objects that all validate against the Kubernetes schemas", async () => {
      const objects = await renderCi(file);
      assert.ok(objects.length > 10, `only ${objects.length} objects rendered`);
      const errors: string[] = [];
      for (const obj of objects) await validateObject(obj).catch((e) => errors.push(e.message));
      assert.deepEqual(errors, []);
      for (const obj of objects) {
        assert.ok(obj.metadata.name.length <= 63, `${obj.metadata.name} is longer than 63`);
        assert.equal(obj.metadata.labels?.["app.kubernetes.io/instance"], "seckill", obj.kind);
      }
      const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
      assert.equal(new Set(names).size, names.length, "duplicate objects");
    });

    it("runs every Deployment with gRPC probes on its gRPC port, non-root, read-only, with resources", async () => {
      const deployments = byKind(await renderCi(file), "Deployment");
      assert.ok(deployments.length >= 1);
      for (const d of deployments) {
        const where = d.metadata.name;
        const pod = podSpec(d);
        const c = mainContainer(d);
        const grpcPort = c.ports.find((p: { name: string }) => p.name === "grpc")?.containerPort;
        assert.ok(grpcPort, `${where}: no port named grpc`);
        assert.equal(String(grpcPort), envValue(c, "PORT"), `${where}: PORT is not the grpc port`);
        for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          assert.equal(
            c[probe]?.grpc?.port,
            grpcPort,
            `${where}: ${probe} is not gRPC on ${grpcPort}`,
          );
          assert.equal(c[probe].grpc.service, undefined, `${where}: ${probe} checks a sub-service`);
        }
        assert.equal(pod.securityContext?.runAsNonRoot, true, `${where}: pod runAsNonRoot`);
        assert.ok(pod.securityContext?.runAsUser > 0, `${where}: pod runAsUser`);
        assert.equal(pod.automountServiceAccountToken, false, `${where}: token mounted`);
        const sc = c.securityContext;
        assert.equal(sc?.runAsNonRoot, true, `${where}: runAsNonRoot`);
        assert.equal(sc?.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
        assert.equal(sc?.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
        assert.ok(sc?.capabilities?.drop?.includes("ALL"), `${where}: capabilities not dropped`);
        assert.ok(
          c.resources?.requests?.cpu && c.resources?.requests?.memory,
          `${where}: requests`,
        );
        assert.ok(c.resources?.limits?.memory, `${where}: memory limit`);
        const tmp = c.volumeMounts?.find((m: { mountPath: string }) => m.mountPath === "/tmp");
        assert.ok(tmp, `${where}: /tmp is not writable`);
        assert.deepEqual(c.args, [d.metadata.labels?.[COMPONENT]], `${where}: args`);
        assert.equal(envValue(c, "HOST"), "0.0.0.0", `${where}: HOST`);
        const advertise = c.env.find((e: { name: string }) => e.name === "ADVERTISE_HOST");
        assert.equal(
          advertise?.valueFrom?.fieldRef?.fieldPath,
          "status.podIP",
          `${where}: ADVERTISE_HOST`,
        );
      }
    });

    it("gives every service time to drain: terminationGracePeriodSeconds > preStop + delay + timeout", async () => {
      for (const d of byKind(await renderCi(file), "Deployment")) {
        const c = mainContainer(d);
        const delay = Number(envValue(c, "SHUTDOWN_DELAY_MS"));
        const timeout = Number(envValue(c, "SHUTDOWN_TIMEOUT_MS"));
        assert.ok(Number.isInteger(delay) && Number.isInteger(timeout), d.metadata.name);
        const preStop = Number(c.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
        const grace = podSpec(d).terminationGracePeriodSeconds;
        assert.ok(
          grace * 1000 > preStop * 1000 + delay + timeout,
          `${d.metadata.name}: grace ${grace}s <= ${preStop}s + ${delay}ms + ${timeout}ms`,
        );
      }
    });

    it("gives each service an environment its own config schema accepts", async () => {
      const objects = await renderCi(file);
      const configMap = byKind(objects, "ConfigMap").find((c) =>
        c.metadata.name.endsWith("-config"),
      );
      assert.ok(configMap);
      for (const d of byKind(objects, "Deployment")) {
        const name = d.metadata.labels?.[COMPONENT] as string;
        const env = resolveEnv(mainContainer(d), configMap.data);
        const schema = CONFIG_SCHEMAS[name];
        assert.ok(schema, `no config schema for ${name}`);
        const known = new Set([...Object.keys(schema.shape), ...GENERIC_ENV]);
        const unknown = Object.keys(env).filter((k) => !known.has(k));
        assert.deepEqual(unknown, [], `${name}: variables its config does not read`);
        const parsed = schema.safeParse(env);
        assert.ok(
          parsed.success,
          `${name}: ${parsed.error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
        );
      }
    });

    it("points every HPA at a Deployment that leaves replicas to it", async () => {
      const objects = await renderCi(file);
      const deployments = byKind(objects, "Deployment");
      const hpas = [
        ...byKind(objects, "HorizontalPodAutoscaler"),
        ...byKind(objects, "ScaledObject"),
      ];
      for (const hpa of hpas) {
        const ref = hpa.spec.scaleTargetRef;
        assert.equal(ref.apiVersion, "apps/v1");
        assert.equal(ref.kind, "Deployment");
        const target = deployments.find((d) => d.metadata.name === ref.name);
        assert.ok(target, `HPA ${hpa.metadata.name} targets missing Deployment ${ref.name}`);
        assert.equal(target.spec.replicas, undefined, `${ref.name} sets replicas under an HPA`);
        const [min, max] =
          hpa.kind === "ScaledObject"
            ? [hpa.spec.minReplicaCount, hpa.spec.maxReplicaCount]
            : [hpa.spec.minReplicas, hpa.spec.maxReplicas];
        assert.ok(min <= max, `${hpa.kind}/${hpa.metadata.name}: min above max`);
      }
      const owners = hpas.map((h) => h.spec.scaleTargetRef.name);
      assert.equal(new Set(owners).size, owners.length, "a Deployment with two autoscalers");
      for (const d of deployments) {
        const scaled = hpas.some((h) => h.spec.scaleTargetRef.name === d.metadata.name);
        if (!scaled)
          assert.ok(Number.isInteger(d.spec.replicas), `${d.metadata.name}: no replicas`);
      }
    });

    it("selects pods with every Service and PDB, on ports the pods have", async () => {
      const objects = await renderCi(file);
      const deployments = byKind(objects, "Deployment");
      const podsOf = (selector: Record<string, string>) =>
        deployments.filter((d) => matches(selector, d.spec.template.metadata.labels));
      for (const d of deployments) {
        assert.ok(
          matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels),
          d.metadata.name,
        );
      }
      for (const svc of byKind(objects, "Service")) {
        const targets = podsOf(svc.spec.selector);
        assert.equal(
          targets.length,
          1,
          `Service ${svc.metadata.name} selects ${targets.length} Deployments`,
        );
        const portNames = mainContainer(targets[0]!).ports.map((p: { name: string }) => p.name);
        for (const port of svc.spec.ports) {
          assert.ok(
            portNames.includes(port.targetPort),
            `${svc.metadata.name}: no pod port ${port.targetPort}`,
          );
        }
      }
      for (const pdb of byKind(objects, "PodDisruptionBudget")) {
        assert.equal(podsOf(pdb.spec.selector.matchLabels).length, 1, `PDB ${pdb.metadata.name}`);
      }
      for (const np of byKind(objects, "NetworkPolicy")) {
        const targets = podsOf(np.spec.podSelector.matchLabels);
        assert.equal(targets.length, 1, `NetworkPolicy ${np.metadata.name}`);
        const portNames = mainContainer(targets[0]!).ports.map((p: { name: string }) => p.name);
        for (const rule of np.spec.ingress) {
          for (const port of rule.ports)
            assert.ok(portNames.includes(port.port), `${np.metadata.name}: ${port.port}`);
        }
      }
      for (const sm of byKind(objects, "ServiceMonitor")) {
        const scraped = byKind(objects, "Service").filter((s) =>
          matches(sm.spec.selector.matchLabels, s.metadata.labels),
        );
        assert.equal(scraped.length, deployments.length, "ServiceMonitor misses Services");
        for (const s of scraped)
          assert.ok(s.spec.ports.some((p: { name: string }) => p.name === "metrics"));
      }
    });

    it("migrates before any service: a pre-install/pre-upgrade hook Job with nothing the release creates", async () => {
      const objects = await renderCi(file);
      const job = objects.find((o) => o.kind === "Job" && o.metadata.name.endsWith("-migrate"));
      assert.ok(job, "no migration Job");
      const hooks = job.metadata.annotations?.["helm.sh/hook"]?.split(",") ?? [];
      assert.ok(hooks.includes("pre-install") && hooks.includes("pre-upgrade"), `hooks: ${hooks}`);
      for (const o of objects) {
        if (["Deployment", "Service", "ConfigMap", "ServiceAccount"].includes(o.kind)) {
          assert.ok(!isHook(o), `${o.kind}/${o.metadata.name} is a hook`);
        }
      }
      // The hook runs before the release's objects exist: it may only use what exists already.
      const created = new Set(
        objects.filter((o) => !isHook(o)).map((o) => `${o.kind}/${o.metadata.name}`),
      );
      const spec = podSpec(job);
      if (spec.serviceAccountName)
        assert.ok(!created.has(`ServiceAccount/${spec.serviceAccountName}`));
      const text = JSON.stringify(spec);
      for (const name of created) {
        const [kind, objName] = name.split("/");
        if (kind === "ConfigMap" || kind === "Secret")
          assert.ok(!text.includes(`"${objName}"`), `Job uses ${name}`);
      }
      assert.deepEqual(mainContainer(job).args, ["cli", "migrate"]);
      assert.equal(spec.restartPolicy, "Never");
      assert.ok(mainContainer(job).env.some((e: { name: string }) => e.name === "MYSQL_URI"));
      assert.equal(
        mainContainer(job).image,
        mainContainer(byKind(objects, "Deployment")[0]!).image,
      );
    });

    it("has a helm test that checks the gateway Service's gRPC port", async () => {
      const objects = await renderCi(file);
      const pod = objects.find(
        (o) => o.kind === "Pod" && o.metadata.annotations?.["helm.sh/hook"] === "test",
      );
      assert.ok(pod, "no helm test pod");
      const gateway = byKind(objects, "Service").find(
        (s) => s.metadata.labels?.[COMPONENT] === "gateway",
      );
      assert.ok(gateway);
      const c = pod.spec.containers[0];
      const grpcPort = gateway.spec.ports.find((p: { name: string }) => p.name === "grpc").port;
      assert.equal(envValue(c, "GRPC_TARGET"), `${gateway.metadata.name}:${grpcPort}`);
      const httpPort = gateway.spec.ports.find((p: { name: string }) => p.name === "http")?.port;
      if (httpPort)
        assert.equal(envValue(c, "HTTP1_URL"), `http://${gateway.metadata.name}:${httpPort}`);
      assert.equal(pod.spec.securityContext.runAsNonRoot, true);
      assert.match(c.command.at(-1), /grpc\.health\.v1\.Health\/Check/);
    });
  });
}

/** Variables that are not in the services' config schemas but are fine to set. */
const GENERIC_ENV = ["NODE_ENV"];

// biome-ignore lint/suspicious/noExplicitAny: zod object schemas of the six services
const CONFIG_SCHEMAS: Record<string, z.ZodObject<any>> = {
  gateway: gatewayConfigSchema,
  auth: authConfigSchema,
  "seckill-app": appConfigSchema,
  "seckill-core": coreConfigSchema,
  order: orderConfigSchema,
  admin: adminConfigSchema,
};

const { privateKey } = generateKeyPairSync("ed25519");
/** Plausible values for what a pod gets from Secrets and the downward API. */
const FAKE_SECRETS: Record<string, string> = {
  MYSQL_URI: "mysql://seckill:secret@mysql:3306/seckill",
  REDIS_URL: "redis://:secret@redis:6379",
  JWT_PRIVATE_KEYS: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  BUY_TOKEN_SECRET: "x".repeat(48),
  ADMIN_USERNAME: "admin",
  ADMIN_PASSWORD: "a-long-admin-password",
};

/** The container's environment as the kubelet would assemble it (Secrets faked). */
function resolveEnv(c: Container, configMap: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...configMap };
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === "status.podIP") env[e.name] = "10.0.0.7";
    else if (e.valueFrom?.fieldRef) env[e.name] = "seckill-pod-abc12";
    else if (e.valueFrom?.secretKeyRef) {
      const value = FAKE_SECRETS[e.name];
      assert.ok(value, `no fake value for secret variable ${e.name}`);
      env[e.name] = value;
    }
  }
  return env;
}

describe("chart values", () => {
  const defaults = join(chartDir, "ci", "default-values.yaml");

  it("omits replicas and adds no HPA when autoscaling is off, and the reverse", async () => {
    const on = await renderChart([defaults]);
    const off = await renderChart(
      [defaults],
      ["services.gateway.autoscaling.enabled=false", "services.gateway.replicas=3"],
    );
    const gw = (objs: K8sObject[]) =>
      byKind(objs, "Deployment").find((d) => d.metadata.labels?.[COMPONENT] === "gateway")!;
    const gwHpa = (objs: K8sObject[]) =>
      byKind(objs, "HorizontalPodAutoscaler").filter(
        (h) => h.metadata.labels?.[COMPONENT] === "gateway",
      );
    assert.equal(gw(on).spec.replicas, undefined);
    assert.equal(gwHpa(on).length, 1);
    assert.equal(gw(off).spec.replicas, 3);
    assert.equal(gwHpa(off).length, 0);
  });

  it("renders nothing for a disabled service", async () => {
    const objects = await renderChart([defaults], ["services.admin.enabled=false"]);
    assert.equal(objects.filter((o) => o.metadata.labels?.[COMPONENT] === "admin").length, 0);
    assert.equal(byKind(objects, "Deployment").length, SERVICES.length - 1);
  });

  it("adds a preStop sleep to the grace period, and pulls by digest when one is set", async () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const objects = await renderChart(
      [defaults],
      [
        "shutdown.preStopSleepSeconds=7",
        `image.digest=${digest}`,
        "image.repository=registry.example.com/seckill",
        "image.tag=1.2.3",
      ],
    );
    const core = byKind(objects, "Deployment").find(
      (d) => d.metadata.labels?.[COMPONENT] === "seckill-core",
    )!;
    const c = mainContainer(core);
    assert.deepEqual(c.lifecycle.preStop.exec.command, ["sleep", "7"]);
    // 7 + ceil(2000 ms) + ceil(10000 ms) + 5 s to close.
    assert.equal(podSpec(core).terminationGracePeriodSeconds, 7 + 2 + 10 + 5);
    assert.equal(c.image, `registry.example.com/seckill:1.2.3@${digest}`);
    assert.equal(envValue(c, "VERSION"), "1.2.3");
  });

  it("takes REDIS_URL from a Secret when one is named, and keeps it out of the ConfigMap", async () => {
    const objects = await renderChart([defaults], ["secrets.redis.name=redis-credentials"]);
    const cm = byKind(objects, "ConfigMap")[0]!;
    assert.equal(cm.data.REDIS_URL, undefined);
    for (const d of byKind(objects, "Deployment")) {
      const redis = mainContainer(d).env.find((e: { name: string }) => e.name === "REDIS_URL");
      assert.equal(redis?.valueFrom?.secretKeyRef?.name, "redis-credentials", d.metadata.name);
    }
  });

  it("runs the load test with k6 or with `seckill load`", async () => {
    const lt = join(chartDir, "ci", "loadtest-values.yaml");
    for (const [tool, expectArgs] of [
      ["k6", ["run", "--quiet", "/loadtest/flash-sale.js"]],
      ["seckill", ["cli", "load", "--target"]],
    ] as const) {
      const objects = await renderChart([lt], [`loadtest.tool=${tool}`]);
      const job = objects.find(
        (o) => o.kind === "Job" && o.metadata.labels?.[COMPONENT] === "loadtest",
      );
      assert.ok(job, tool);
      assert.deepEqual(mainContainer(job).args.slice(0, expectArgs.length), expectArgs);
      assert.ok(!isHook(job), "the load test is not a hook");
      assert.match(job.metadata.name, /-loadtest-1$/);
      await validateObject(job);
    }
  });

  const autoscaling = join(chartDir, "ci", "autoscaling-values.yaml");
  const componentOf = (objs: K8sObject[], kind: string, component: string) =>
    byKind(objs, kind).filter((o) => o.metadata.labels?.[COMPONENT] === component);

  it("adds a per-pod custom metric to the HPA, next to CPU or instead of it", async () => {
    const objects = await renderCi(autoscaling);
    const [gw] = componentOf(objects, "HorizontalPodAutoscaler", "gateway");
    const [app] = componentOf(objects, "HorizontalPodAutoscaler", "seckill-app");
    assert.ok(gw && app);
    await validateObject(gw);
    await validateObject(app);
    assert.deepEqual(
      gw.spec.metrics.map((m: { type: string }) => m.type),
      ["Resource", "Pods"],
    );
    assert.deepEqual(gw.spec.metrics[1].pods, {
      metric: { name: "seckill_gateway_forwarded_per_second" },
      target: { type: "AverageValue", averageValue: "400" },
    });
    assert.deepEqual(app.spec.metrics, [
      {
        type: "Pods",
        pods: {
          metric: { name: "seckill_app_buy_inflight" },
          target: { type: "AverageValue", averageValue: "200" },
        },
      },
    ]);
    // Off by default: CPU only.
    const defaultsHpa = componentOf(await renderCi(defaults), "HorizontalPodAutoscaler", "gateway");
    assert.deepEqual(
      defaultsHpa[0]?.spec.metrics.map((m: { type: string }) => m.type),
      ["Resource"],
    );
  });

  it("serves every custom metric the values name from a prometheus-adapter rule", () => {
    const adapter = parseYaml(
      readFileSync(
        join(repoRoot, "deploy", "monitoring", "prometheus-adapter-values.yaml"),
        "utf8",
      ),
    );
    const served = new Set<string>(
      adapter.rules.custom.map((r: { name: { as: string } }) => r.name.as),
    );
    // The series the rules read are metrics a service really exports.
    const sources = SERVICES.flatMap((svc) =>
      readdirSync(join(repoRoot, "services", svc, "src"), { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
        .map((f) => readFileSync(join(repoRoot, "services", svc, "src", f), "utf8")),
    ).join("\n");
    for (const rule of adapter.rules.custom) {
      const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{/.exec(rule.seriesQuery)?.[1];
      assert.ok(series && sources.includes(`"${series}"`), `no service exports ${series}`);
      assert.match(rule.metricsQuery, /<<\.LabelMatchers>>/, rule.name.as);
      assert.match(rule.metricsQuery, /by \(<<\.GroupBy>>\)/, rule.name.as);
      assert.deepEqual(Object.keys(rule.resources.overrides).sort(), ["namespace", "pod"]);
    }
    for (const file of [join(chartDir, "values.yaml"), autoscaling]) {
      const values = parseYaml(readFileSync(file, "utf8"));
      for (const [name, svc] of Object.entries<{
        autoscaling?: { customMetric?: { name?: string } };
      }>(values.services)) {
        const metric = svc.autoscaling?.customMetric?.name;
        if (metric) assert.ok(served.has(metric), `${name}: no adapter rule serves ${metric}`);
      }
    }
  });

  it("scales order with a KEDA ScaledObject on its streams' backlog, without an HPA", async () => {
    const objects = await renderCi(autoscaling);
    const [so] = byKind(objects, "ScaledObject");
    assert.ok(so, "no ScaledObject");
    assert.equal(so.apiVersion, "keda.sh/v1alpha1");
    await validateObject(so);
    const order = componentOf(objects, "Deployment", "order")[0]!;
    assert.deepEqual(so.spec.scaleTargetRef, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: order.metadata.name,
    });
    assert.equal(order.spec.replicas, undefined, "order sets replicas under KEDA");
    assert.equal(componentOf(objects, "HorizontalPodAutoscaler", "order").length, 0);
    assert.equal(so.spec.minReplicaCount, 2);
    assert.equal(so.spec.maxReplicaCount, 12);
    const [auth] = byKind(objects, "TriggerAuthentication");
    assert.ok(auth, "no TriggerAuthentication");
    await validateObject(auth);
    assert.deepEqual(auth.spec.secretTargetRef, [
      { parameter: "password", name: "seckill-redis-password", key: "password" },
    ]);
    assert.deepEqual(
      so.spec.triggers.map((t: { metadata: { stream: string } }) => t.metadata.stream),
      [orderIntentStream("spring-sale"), orderIntentStream("42")],
    );
    for (const t of so.spec.triggers) {
      assert.equal(t.type, "redis-streams");
      assert.deepEqual(t.metadata, {
        address: "redis-master.data.svc:6379",
        stream: t.metadata.stream,
        consumerGroup: ORDER_CONSUMER_GROUP,
        lagCount: "500",
      });
      assert.deepEqual(t.authenticationRef, { name: auth.metadata.name });
    }
    // Off by default, and no TriggerAuthentication without a password Secret.
    const noAuth = await renderChart([autoscaling], ["keda.passwordSecret.name="]);
    assert.equal(byKind(noAuth, "TriggerAuthentication").length, 0);
    assert.equal(byKind(noAuth, "ScaledObject")[0]?.spec.triggers[0].authenticationRef, undefined);
    assert.equal(byKind(await renderCi(defaults), "ScaledObject").length, 0);
  });

  const refused: [string, string[], RegExp][] = [
    ["an unknown top-level key", ["replicaCount=3"], /additional properties 'replicaCount'/],
    [
      "an unknown key of a service",
      ["services.gateway.replica=3"],
      /additional properties 'replica'/,
    ],
    ["an unknown service", ["services.payments.enabled=true"], /additional properties 'payments'/],
    [
      "a writable root filesystem",
      ["securityContext.readOnlyRootFilesystem=false"],
      /readOnlyRootFilesystem/,
    ],
    ["running as root", ["podSecurityContext.runAsNonRoot=false"], /runAsNonRoot/],
    ["a variable the chart sets itself", ["services.order.env.PORT=1"], /PORT/],
    ["a bad variable name", ["config.bad-name=1"], /bad-name/],
    ["negative replicas", ["services.order.replicas=-1"], /replicas/],
    ["a digest that is not sha256", ["image.digest=latest"], /digest/],
    ["otlp without an endpoint", ["otel.tracesExporter=otlp"], /otlpEndpoint/],
    ["a missing CPU request", ["services.auth.resources.requests.cpu=null"], /cpu/],
    ["an unknown store", ["services.auth.uses={redis,kafka}"], /uses/],
    ["a bad pull policy", ["image.pullPolicy=Sometimes"], /pullPolicy/],
    ["a KEDA Redis address given as a URL", ["keda.address=redis://r:6379"], /address/],
    ["an unknown KEDA trigger metric", ["keda.metric=xlen"], /metric/],
    [
      "a custom metric without a target",
      ["services.gateway.autoscaling.customMetric.averageValue=lots"],
      /averageValue/,
    ],
  ];
  for (const [what, set, message] of refused) {
    it(`refuses ${what} (schema)`, async () => {
      const res = await templateChart([defaults], set);
      assert.equal(res.ok, false, `accepted ${set.join(" ")}`);
      assert.match(res.stderr, /values don't meet the specifications of the schema/);
      assert.match(res.stderr, message);
    });
  }

  const failed: [string, string[], RegExp][] = [
    ["dev keys on more than one auth pod", ["authDevKeys=true"], /authDevKeys/],
    ["a PDB that blocks every drain", ["services.order.pdb.minAvailable=2"], /minAvailable/],
    [
      "autoscaling with min above max",
      ["services.gateway.autoscaling.minReplicas=30"],
      /minReplicas/,
    ],
    [
      "a load test without provisioning",
      ["loadtest.enabled=true", "secrets.adminBootstrap.name=a"],
      /ALLOW_PROVISIONING/,
    ],
    ["a missing MySQL Secret", ["secrets.mysql.name="], /secrets\.mysql\.name is required/],
    [
      "both an HPA and KEDA for order",
      ["keda.enabled=true", "keda.activities={a}", "services.order.autoscaling.enabled=true"],
      /services\.order\.autoscaling\.enabled and keda\.enabled are exclusive/,
    ],
    ["KEDA without a sale to watch", ["keda.enabled=true"], /keda\.activities is empty/],
    [
      "an HPA with no metric at all",
      [
        "services.gateway.autoscaling.targetCPUUtilizationPercentage=0",
        "services.gateway.autoscaling.customMetric.enabled=false",
      ],
      /customMetric\.enabled/,
    ],
  ];
  for (const [what, set, message] of failed) {
    it(`refuses ${what} (template)`, async () => {
      const res = await templateChart([defaults], set);
      assert.equal(res.ok, false, `accepted ${set.join(" ")}`);
      assert.match(res.stderr, message);
    });
  }
});

describe("chart metadata and docs", () => {
  it("defaults the image tag to the package version", () => {
    const chart = parseYaml(readFileSync(join(chartDir, "Chart.yaml"), "utf8"));
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
    assert.equal(chart.appVersion, pkg.version);
  });

  it("documents every value in the README's values table", () => {
    const values = parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8"));
    const readme = readFileSync(join(chartDir, "README.md"), "utf8");
    const documented = new Set([...readme.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]));
    const missing = valuePaths(values).filter((p) => !documented.has(p));
    assert.deepEqual(missing, [], "values missing from charts/seckill/README.md");
  });

  it("has one values entry per service folder", () => {
    const values = parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8"));
    assert.deepEqual(Object.keys(values.services).sort(), [...SERVICES].sort());
  });
});

/** Leaf paths of values.yaml; maps whose keys are free (env, labels, …) count as one leaf. */
function valuePaths(values: Record<string, unknown>): string[] {
  const freeMaps = new Set([
    "env",
    "config",
    "commonLabels",
    "annotations",
    "podAnnotations",
    "podLabels",
    "nodeSelector",
    "affinity",
    "labels",
    "requests",
    "limits",
  ]);
  const out = new Set<string>();
  const walk = (value: unknown, path: string, key: string) => {
    if (value && typeof value === "object" && !Array.isArray(value) && !freeMaps.has(key)) {
      for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k, k);
    } else {
      out.add(path);
    }
  };
  for (const [name, svc] of Object.entries(values.services as Record<string, unknown>)) {
    walk(svc, "services.<name>", name);
  }
  const { services: _, ...rest } = values;
  walk(rest, "", "");
  return [...out].sort();
}
