/**
 * The other delivery files: the Dockerfile and .dockerignore, skaffold.yaml (every path it
 * names exists, every value it sets is a chart value, each profile renders), and the k6
 * load test (valid module, only RPCs the contracts have).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { dockerInstructions, PROD_INSTALL, stage } from "./dockerfile.ts";
import { chartDir, type K8sObject, renderChart, repoRoot, validateObject } from "./kube.ts";

const run = promisify(execFile);
const read = (path: string) => readFileSync(join(repoRoot, path), "utf8");

describe("Dockerfile", () => {
  const steps = dockerInstructions();
  const stages = steps.filter((s) => s.op === "FROM").map((s) => s.args);

  it("builds in stages from Node 24, and the runtime is the last", () => {
    const base = steps.find((s) => s.op === "ARG" && s.args.startsWith("NODE_IMAGE="));
    assert.match(base?.args ?? "", /^NODE_IMAGE=node:24-/);
    const parts = stages.map((s) => s.split(" AS "));
    assert.deepEqual(
      parts.map(([, name]) => name),
      ["deps", "prod-deps", "build", "runtime"],
    );
    const bases = parts.map(([from]) => from);
    for (const i of [0, 1, 3]) assert.match(bases[i]!, /^\$\{NODE_IMAGE\}$/);
    assert.equal(bases[2], "deps");
  });

  it("installs the runtime's modules with the command the smoke test runs, without dev dependencies", () => {
    const runtime = stage(steps, "runtime");
    const prodDeps = stage(steps, "prod-deps");
    assert.ok(prodDeps.some((s) => s.op === "RUN" && s.args.endsWith(PROD_INSTALL)));
    const copies = runtime.filter((s) => s.op === "COPY").map((s) => s.args);
    assert.ok(
      copies.includes("--from=prod-deps /src/node_modules ./node_modules"),
      copies.join("\n"),
    );
    assert.ok(copies.some((c) => c.startsWith("--from=build /src/dist ")));
    assert.ok(!copies.some((c) => c.includes("--from=deps ")), "runtime copies from the dev stage");
    assert.ok(
      !steps.some((s) => s.op === "RUN" && /\bnpm install\b/.test(s.args)),
      "npm install may rewrite the lockfile: the image installs with npm ci",
    );
  });

  it("runs as a non-root numeric user with the service as the first argument", () => {
    const runtime = stage(steps, "runtime");
    const user = runtime.filter((s) => s.op === "USER").at(-1)?.args;
    assert.match(user ?? "", /^[1-9][0-9]*(:[0-9]+)?$/);
    const entrypoint = JSON.parse(runtime.find((s) => s.op === "ENTRYPOINT")!.args) as string[];
    assert.equal(entrypoint[0], "/bin/sh");
    assert.match(entrypoint[2]!, /exec node "\$main"/);
    assert.deepEqual(JSON.parse(runtime.find((s) => s.op === "CMD")!.args), ["gateway"]);
  });

  it("keeps what it copies in the build context (.dockerignore)", () => {
    const ignored = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    for (const must of ["**/node_modules", "dist", ".git", "services/gen", ".tools"]) {
      assert.ok(ignored.includes(must), `.dockerignore lacks ${must}`);
    }
    const sources = steps
      .filter((s) => s.op === "COPY" && !s.args.startsWith("--from"))
      .flatMap((s) => s.args.split(/\s+/).slice(0, -1));
    for (const src of [...sources, "proto", "loadtest/flash-sale.js"]) {
      assert.ok(existsSync(join(repoRoot, src)), `COPY source ${src} missing`);
      const top = src.split("/")[0]!;
      assert.ok(!ignored.includes(src) && !ignored.includes(top), `${src} is in .dockerignore`);
    }
  });
});

describe("skaffold.yaml", () => {
  const configs = parseAllDocuments(read("skaffold.yaml")).map((d) => d.toJS());
  const values = parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8"));

  it("uses the v4 schema, with a dev-stores config and a chart config with dev, loadtest and prod profiles", () => {
    for (const c of configs) {
      assert.match(c.apiVersion, /^skaffold\/v4beta\d+$/);
      assert.equal(c.kind, "Config");
    }
    assert.deepEqual(
      configs.map((c) => c.metadata.name),
      ["seckill-deps", "seckill"],
    );
    assert.deepEqual(configs[0].manifests.kustomize.paths, ["k8s"]);
    const profiles = configs[1].profiles.map((p: { name: string }) => p.name);
    assert.deepEqual(profiles, ["dev", "loadtest", "prod"]);
  });

  /** Every helm release of the chart config, with the profile it comes from. */
  const releases = () => {
    const chart = configs[1];
    const out: [string, Record<string, unknown>][] = chart.deploy.helm.releases.map(
      (r: Record<string, unknown>) => ["base", r],
    );
    for (const p of chart.profiles) {
      for (const r of p.deploy?.helm?.releases ?? []) out.push([p.name, r]);
    }
    return out;
  };

  it("builds images from Dockerfiles that exist", () => {
    const chart = configs[1];
    const artifacts = [
      ...chart.build.artifacts,
      ...chart.profiles.flatMap(
        (p: { build?: { artifacts?: unknown[] } }) => p.build?.artifacts ?? [],
      ),
    ];
    for (const a of artifacts) {
      assert.ok(existsSync(join(repoRoot, a.context, a.docker.dockerfile)), a.docker.dockerfile);
    }
  });

  it("sets only chart values that exist, and each profile's chart renders and validates", async () => {
    const fake: Record<string, string> = {
      "{{.IMAGE_REPO_seckill}}": "localhost:5000/seckill",
      "{{.IMAGE_TAG_seckill}}": "abc123",
      "{{.IMAGE_DIGEST_seckill}}": `sha256:${"cd".repeat(32)}`,
      "{{.IMAGE_REPO_seckill_loadtest}}": "localhost:5000/seckill-loadtest",
      "{{.IMAGE_TAG_seckill_loadtest}}": "def456",
    };
    for (const [profile, release] of releases()) {
      assert.equal(release.chartPath, "charts/seckill");
      const files = (release.valuesFiles as string[]).map((f) => join(repoRoot, f));
      for (const f of files) assert.ok(existsSync(f), f);
      const set: string[] = [];
      for (const [key, template] of Object.entries(
        release.setValueTemplates as Record<string, string>,
      )) {
        let node = values;
        for (const part of key.split(".")) {
          assert.ok(node && part in node, `${profile}: ${key} is not a chart value`);
          node = node[part];
        }
        assert.ok(fake[template], `${profile}: unexpected template ${template}`);
        set.push(`${key}=${fake[template]}`);
      }
      const objects = await renderChart(files, set);
      const deployment = objects.find((o) => o.kind === "Deployment") as K8sObject;
      assert.match(
        deployment.spec.template.spec.containers[0].image,
        /^localhost:5000\/seckill:abc123/,
      );
      for (const o of objects) await validateObject(o);
    }
  });
});

describe("loadtest/flash-sale.js", () => {
  const script = read("loadtest/flash-sale.js");

  it("is a valid ES module", async () => {
    await run(process.execPath, ["--check", join(repoRoot, "loadtest", "flash-sale.js")]);
  });

  it("loads proto files that exist and calls only RPCs they define", () => {
    const loaded = [...script.matchAll(/"(seckill\/[a-z]+\/v1\/[a-z_]+\.proto)"/g)].map(
      (m) => m[1]!,
    );
    assert.ok(loaded.length >= 3);
    const rpcs = new Set<string>();
    for (const file of loaded) {
      const text = readFileSync(join(repoRoot, "proto", file), "utf8");
      const pkg = text.match(/^package ([\w.]+);/m)![1];
      for (const block of text.matchAll(/service (\w+) \{([\s\S]*?)\n\}/g)) {
        for (const rpc of block[2]!.matchAll(/rpc (\w+)\(/g))
          rpcs.add(`${pkg}.${block[1]}/${rpc[1]}`);
      }
    }
    const constants = Object.fromEntries(
      [...script.matchAll(/const (\w+) = "(seckill\.[\w.]+)";/g)].map((m) => [m[1]!, m[2]!]),
    );
    const called = [...script.matchAll(/`\$\{(\w+)\}\/(\w+)`/g)].map(
      (m) => `${constants[m[1]!]}/${m[2]}`,
    );
    assert.ok(called.length >= 8, `only ${called.length} calls found`);
    for (const rpc of called) assert.ok(rpcs.has(rpc), `${rpc} is not in the contracts`);
  });
});
