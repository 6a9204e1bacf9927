/**
 * Production-install smoke test: what the image's runtime stage holds, built the same way in a
 * temporary folder, must start a service with the image's own entrypoint.
 *
 *   1. compile the services to dist/ and the web pages to dist/web (tsc and web/build.ts, as
 *      `npm run build` and `npm run build:web` do after `npm run generate`, which `npm test`
 *      ran already);
 *   2. copy dist/, package.json and package-lock.json into a temporary folder and install the
 *      production dependencies with the Dockerfile's command (no dev dependencies appear, the
 *      lockfile stays as it is);
 *   3. make the folder read-only and, when we are root, drop to uid 1000 as the image does;
 *   4. run the migration Job's command against a private MariaDB (twice: it is idempotent);
 *   5. start seckill-core and the gateway with the Dockerfile's ENTRYPOINT and ENV against a
 *      private Redis and etcd; check them with the chart's `helm test` script (grpc.health.v1 →
 *      SERVING over h2c and HTTP/1.1, using the runtime's own node_modules) and /readyz;
 *      SIGTERM → exit 0.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { findBinary } from "../../services/shared/src/stack/binaries.ts";
import { freePort, type Stack, startStack } from "../../services/shared/src/stack/index.ts";
import { dockerInstructions, PROD_INSTALL, stage } from "./dockerfile.ts";
import { renderChart, repoRoot } from "./kube.ts";

const exec = promisify(execFile);

/** The runtime stage's ENV, ENTRYPOINT and CMD, as Docker would apply them. */
function runtimeStage() {
  const runtime = stage(dockerInstructions(), "runtime");
  const env: Record<string, string> = {};
  for (const s of runtime.filter((x) => x.op === "ENV")) {
    for (const m of s.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  }
  const workdir = runtime.find((s) => s.op === "WORKDIR")!.args;
  const user = runtime
    .find((s) => s.op === "USER")!
    .args.split(":")
    .map(Number) as [number, number];
  return {
    env,
    workdir,
    user,
    entrypoint: JSON.parse(runtime.find((s) => s.op === "ENTRYPOINT")!.args) as string[],
  };
}

describe("production install smoke test", { timeout: 480_000 }, () => {
  const image = runtimeStage();
  let root: string;
  let app: string;
  let stack: Stack<{ redis: true; etcd: true; mariadb: true }>;
  const children = new Set<ChildProcess>();

  /** Runs a command as the image would: its user (when we can), its PATH, a clean environment. */
  function launch(command: string[], env: Record<string, string>) {
    const nodeDir = dirname(process.execPath);
    const setpriv = process.getuid?.() === 0 ? findBinary("setpriv") : undefined;
    const [uid, gid] = image.user;
    const argv = setpriv
      ? [
          setpriv,
          `--reuid=${uid}`,
          `--regid=${gid}`,
          "--clear-groups",
          "--pdeathsig",
          "KILL",
          "--",
          ...command,
        ]
      : command;
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: app,
      env: {
        PATH: `${nodeDir}:/usr/local/bin:/usr/bin:/bin`,
        HOME: app,
        TMPDIR: join(root, "tmp"),
        ...image.env,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let output = "";
    child.stdout!.on("data", (c) => {
      output += c;
    });
    child.stderr!.on("data", (c) => {
      output += c;
    });
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code, signal) => {
        children.delete(child);
        resolve(code ?? (signal ? -1 : null));
      }),
    );
    return { child, exited, output: () => output };
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "seckill-smoke-"));
    app = join(root, "app");
    mkdirSync(join(root, "tmp"), { mode: 0o1777 });
    chmodSync(join(root, "tmp"), 0o1777);
    chmodSync(root, 0o755);
    stack = await startStack({ redis: true, etcd: true, mariadb: true });
  });

  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await stack?.stop();
    if (root) {
      if (existsSync(app)) chmodSync(app, 0o755);
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("builds, installs production dependencies only, and keeps the lockfile", {
    timeout: 360_000,
  }, async () => {
    const build = join(root, "build");
    const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
    // Compiling and installing are CPU-heavy: at a low priority they leave the timing-sensitive
    // tests that run beside this one alone.
    await exec(
      "nice",
      [process.execPath, tsc, "-p", "tsconfig.build.json", "--outDir", join(build, "dist")],
      { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 },
    );
    // `npm run build:web`'s step: the gateway's pages into dist/web.
    await exec(
      "nice",
      [process.execPath, "--import", "tsx", "web/build.ts", join(build, "dist", "web")],
      { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 },
    );
    mkdirSync(app);
    cpSync(join(build, "dist"), join(app, "dist"), { recursive: true });
    for (const f of ["package.json", "package-lock.json"]) cpSync(join(repoRoot, f), join(app, f));
    const [npm, ...args] = PROD_INSTALL.split(" ");
    await exec("nice", [npm!, ...args, "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: app,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, npm_config_update_notifier: "false" },
    });
    const lock = (dir: string) => readFileSync(join(dir, "package-lock.json"), "utf8");
    assert.equal(lock(app), lock(repoRoot), "npm ci rewrote the lockfile");
    // The lockfile marks what only the dev dependencies need: none of it may be installed.
    const locked = JSON.parse(lock(repoRoot)).packages as Record<string, { dev?: boolean }>;
    const devOnly = Object.keys(locked).filter((p) => p && locked[p]!.dev);
    assert.ok(devOnly.includes("node_modules/typescript"));
    for (const path of devOnly)
      assert.ok(!existsSync(join(app, path)), `dev-only ${path} installed`);
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
    for (const dep of Object.keys(pkg.dependencies)) {
      assert.ok(existsSync(join(app, "node_modules", dep)), `${dep} missing`);
    }
    // The image's files are not writable by the service's user (readOnlyRootFilesystem).
    await exec("chmod", ["-R", "a-w", app]);
  });

  it("refuses a missing or unknown service with the list of services", async () => {
    for (const args of [[], ["no-such-service"]]) {
      const run = launch([...image.entrypoint, ...args], {});
      assert.equal(await run.exited, 64, run.output());
      assert.match(run.output(), /services: .*seckill-core/);
    }
  });

  it("runs the chart's migration Job command: every schema migrated, twice without harm", async () => {
    const chart = await renderChart();
    const job = chart.find((o) => o.kind === "Job" && o.metadata.name.endsWith("-migrate"))!;
    const args = job.spec.template.spec.containers[0].args as string[];
    for (let run = 1; run <= 2; run++) {
      const migrate = launch([...image.entrypoint, ...args], { MYSQL_URI: stack.mariadb.uri });
      assert.equal(await migrate.exited, 0, migrate.output());
      if (run === 1) assert.match(migrate.output(), /"msg":"migration applied"/);
      for (const service of ["auth", "admin", "order"]) {
        assert.match(
          migrate.output(),
          new RegExp(`"service":"${service}".*"msg":"schema up to date"`),
        );
      }
    }
  });

  /** Starts one service with the image's entrypoint; resolves once it logged "serving". */
  async function startImageService(name: string, env: Record<string, string> = {}) {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const service = launch([...image.entrypoint, name], {
      HOST: "127.0.0.1",
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      ETCD_ENDPOINTS: stack.etcd.endpoints.join(","),
      REDIS_URL: stack.redis.url,
      INSTANCE_ID: `smoke-${name}-1`,
      SHUTDOWN_DELAY_MS: "300",
      SHUTDOWN_TIMEOUT_MS: "3000",
      ...env,
    });
    const deadline = Date.now() + 30_000;
    while (!/"msg":"serving"/.test(service.output())) {
      assert.ok(service.child.exitCode === null, `${name} exited early:\n${service.output()}`);
      assert.ok(Date.now() < deadline, `${name} not serving after 30 s:\n${service.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { ...service, port, metricsPort };
  }

  /** SIGTERM, then exit 0 within delay + drain, having logged "stopped". */
  async function stopImageService(service: Awaited<ReturnType<typeof startImageService>>) {
    const stopping = Date.now();
    service.child.kill("SIGTERM");
    assert.equal(await service.exited, 0, service.output());
    assert.ok(Date.now() - stopping < 10_000, "shutdown took longer than delay + drain");
    assert.match(service.output(), /"msg":"stopped"/);
    assert.doesNotMatch(service.output(), /EACCES|EROFS/);
  }

  it("starts seckill-core and the gateway with the image's entrypoint: SERVING, then exit 0 on SIGTERM", async () => {
    assert.equal(image.env.NODE_ENV, "production");
    const core = await startImageService("seckill-core");
    const http1Port = await freePort();
    const gateway = await startImageService("gateway", { HTTP1_PORT: String(http1Port) });

    // The chart's `helm test` script, run from the runtime folder (its own node_modules):
    // against the gateway over h2c and HTTP/1.1, as in the cluster, and against core.
    const chart = await renderChart();
    const testPod = chart.find(
      (o) => o.kind === "Pod" && o.metadata.annotations?.["helm.sh/hook"] === "test",
    )!;
    const command = testPod.spec.containers[0].command as string[];
    const viaGateway = launch(command, {
      GRPC_TARGET: `127.0.0.1:${gateway.port}`,
      HTTP1_URL: `http://127.0.0.1:${http1Port}`,
    });
    assert.equal(await viaGateway.exited, 0, viaGateway.output());
    assert.match(viaGateway.output(), /ok: gRPC \(h2c\) 127\.0\.0\.1:\d+ SERVING/);
    assert.match(
      viaGateway.output(),
      /ok: Connect \(HTTP\/1\.1\) http:\/\/127\.0\.0\.1:\d+ SERVING/,
    );
    const viaCore = launch(command, { GRPC_TARGET: `127.0.0.1:${core.port}` });
    assert.equal(await viaCore.exited, 0, viaCore.output());

    // The web pages come from the image's dist/web (WEB_ROOT, relative to the working directory).
    assert.equal(image.env.WEB_ROOT, "dist/web");
    assert.match(gateway.output(), /"msg":"serving pages"/);
    const page = await fetch(`http://127.0.0.1:${http1Port}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);

    for (const s of [core, gateway]) {
      const ready = await fetch(`http://127.0.0.1:${s.metricsPort}/readyz`);
      assert.equal(ready.status, 200);
      const metrics = await (await fetch(`http://127.0.0.1:${s.metricsPort}/metrics`)).text();
      assert.match(metrics, /seckill_process_/);
    }
    await stopImageService(gateway);
    await stopImageService(core);
  });
});
