/**
 * `npm run conformance`: the official Connect conformance suite against the edge stack.
 *
 * 1. connectconformance, built with `go install` into the git-ignored .tools/bin at the version
 *    scripts/setup.sh names (the one place the version is written);
 * 2. the suite's .proto files, fetched with `go mod download` of the same module version and
 *    copied into the git-ignored conformance/gen/proto, generated with the repository's buf and
 *    protoc-gen-es (conformance/buf.gen.yaml) into conformance/gen/ts, then type-checked
 *    (conformance/tsconfig.json: the main tsconfig leaves this folder out, since its generated
 *    code exists only after this step);
 * 3. `connectconformance --mode server --conf conformance/config.yaml --known-failing
 *    @conformance/known-failures.txt -- node --import tsx conformance/server.ts`, then one line
 *    with the suite's summary. Extra arguments go to connectconformance (`-v`, `--trace`,
 *    `--run PATTERN`). Exits with the suite's status.
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const here = path.join(root, "conformance");
const gen = path.join(here, "gen");
const bin = path.join(root, ".tools", "bin");
const runner = path.join(bin, "connectconformance");
/** RPCs in flight at once: enough to overlap the suite's delays, gentle on a 2-core machine. */
const PARALLEL = "4";
/**
 * Servers under test running at once. The runner gives a server 10 s to answer on stdout, and
 * one takes about 3 s to load the edge stack (tsx, gRPC, etcd, OpenTelemetry): four starting
 * together on two cores miss that deadline.
 */
const MAX_SERVERS = "2";

const say = (msg: string) => process.stderr.write(`conformance: ${msg}\n`);

function toolSpec(): { pkg: string; module: string; version: string } {
  const setup = fs.readFileSync(path.join(root, "scripts", "setup.sh"), "utf8");
  const m = /^go_tool connectconformance (\S+) (\S+)$/m.exec(setup);
  if (!m)
    throw new Error("scripts/setup.sh has no `go_tool connectconformance MODULE VERSION` line");
  const pkg = m[1]!;
  return { pkg, module: pkg.replace(/\/cmd\/connectconformance$/, ""), version: m[2]! };
}

function goBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const go = path.join(dir, "go");
    if (dir && fs.existsSync(go)) return go;
  }
  if (fs.existsSync("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
  throw new Error("Go is needed to build connectconformance and fetch its protos; install Go");
}

const goEnv = () => ({ ...process.env, GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? "local" });

function ensureRunner(pkg: string, version: string) {
  const stamp = path.join(bin, ".connectconformance-version");
  if (fs.existsSync(runner) && fs.readFileSync(stamp, "utf8").trim() === version) return;
  say(`building connectconformance ${version} with go install into .tools/bin`);
  fs.mkdirSync(bin, { recursive: true });
  execFileSync(goBinary(), ["install", `${pkg}@${version}`], {
    stdio: "inherit",
    env: { ...goEnv(), GOBIN: bin, GOFLAGS: "-mod=mod" },
  });
  fs.writeFileSync(stamp, `${version}\n`);
}

function ensureGenerated(module: string, version: string) {
  const stamp = path.join(gen, ".version");
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8").trim() === version) return;
  say(`fetching the .proto files of ${module}@${version} (go mod download) and generating them`);
  const info = JSON.parse(
    execFileSync(goBinary(), ["mod", "download", "-json", `${module}@${version}`], {
      cwd: here,
      env: goEnv(),
      encoding: "utf8",
    }),
  ) as { Dir?: string; Error?: string };
  if (!info.Dir) throw new Error(`go mod download ${module}@${version}: ${info.Error}`);
  fs.rmSync(gen, { recursive: true, force: true });
  const protoDir = path.join(gen, "proto");
  fs.cpSync(path.join(info.Dir, "proto", "connectrpc"), path.join(protoDir, "connectrpc"), {
    recursive: true,
  });
  // The module cache is read-only; the copies must be removable on the next version bump.
  for (const entry of fs.readdirSync(gen, { recursive: true, withFileTypes: true })) {
    const p = path.join(entry.parentPath, entry.name);
    fs.chmodSync(p, entry.isDirectory() ? 0o755 : 0o644);
  }
  fs.writeFileSync(path.join(protoDir, "buf.yaml"), "version: v2\n");
  const npx = (...args: string[]) => execFileSync("npx", args, { cwd: root, stdio: "inherit" });
  npx("buf", "generate", "conformance/gen/proto", "--template", "conformance/buf.gen.yaml");
  fs.writeFileSync(stamp, `${version}\n`);
}

/** Every known-failing pattern needs its reason: a comment line right above it. */
function checkKnownFailures(file: string) {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  lines.forEach((line, i) => {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) return;
    if (!lines[i - 1]?.trim().startsWith("#"))
      throw new Error(`${path.relative(root, file)}:${i + 1}: "${t}" has no reason above it`);
  });
}

const { pkg, module, version } = toolSpec();
ensureRunner(pkg, version);
ensureGenerated(module, version);
execFileSync("npx", ["tsc", "-p", "conformance/tsconfig.json"], { cwd: root, stdio: "inherit" });
const knownFailures = path.join(here, "known-failures.txt");
checkKnownFailures(knownFailures);

const started = Date.now();
const args = [
  "--mode",
  "server",
  "--conf",
  path.join(here, "config.yaml"),
  "--known-failing",
  `@${knownFailures}`,
  "--parallel",
  PARALLEL,
  "--max-servers",
  MAX_SERVERS,
  ...process.argv.slice(2),
  "--",
  process.execPath,
  "--import",
  "tsx",
  path.join(here, "server.ts"),
];
say(`connectconformance ${version} --mode server against conformance/server.ts (edge stack)`);
const child = spawn(runner, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
let output = "";
child.stdout.on("data", (chunk: Buffer) => {
  output += chunk;
  process.stdout.write(chunk);
});
child.stderr.on("data", (chunk: Buffer) => {
  output += chunk;
  process.stderr.write(chunk);
});
const code = await new Promise<number>((resolve) =>
  child.on("close", (status, signal) => resolve(status ?? (signal ? 1 : 0))),
);

const total = /Total cases: (\d+)/.exec(output)?.[1];
const counts = /(\d+) passed, (\d+) failed/.exec(output);
const known = /\((\d+) failed as expected/.exec(output)?.[1] ?? "0";
const notRun = /Another (\d+) could not be run/.exec(output)?.[1];
const secs = ((Date.now() - started) / 1000).toFixed(0);
if (total && counts) {
  console.log(
    `\nconformance summary: ${counts[1]} passed, ${counts[2]} failed, ${known} known failures ` +
      `(of ${total} cases${notRun ? `; ${notRun} more could not be run` : ""}; ` +
      `connectconformance ${version}, ${secs} s)`,
  );
} else {
  console.log(`\nconformance: no summary from connectconformance (exit ${code}, ${secs} s)`);
}
process.exit(code === 0 && total && counts ? 0 : code || 1);
