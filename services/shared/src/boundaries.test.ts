/**
 * Service boundaries. A service imports another service only through that
 * service's client module, `services/<service>/src/client.ts`: the one file
 * where a service says what other code may use of it (seckill-core's batching
 * Reserve client, auth's access-token verifier). `services/shared` and
 * `services/gen` are importable by every service; `services/shared` and
 * `services/gen` import no service. One more module is published, to one
 * importer: a service's schema, `src/migrations/index.ts`, to the `seckill
 * migrate` job in `services/cli` (through client.ts it would load kysely into
 * every caller: auth's into the gateway). And a service's test kit,
 * `src/testing.ts`, is published to the tests, test helpers and benchmarks of
 * other services (auth's token minting for the gateway's tests, order's schema
 * for admin's): what a test may build of another service, said in one file.
 *
 * The rule holds for every TypeScript file under `services/`: sources, tests,
 * test helpers and benchmarks alike. A test that reached into another service's
 * internals would pin them as surely as a source file does; tests start other
 * services and build fixtures through the test kit (`services/shared/src/testing`)
 * or the other service's client module. Type-only and dynamic imports count
 * too. Spawning a service's `main.ts` by path is not an import and is allowed.
 * The repository's `bench/`, `deploy/` and `web/` stand outside `services/`
 * and are not checked.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

/** Folders of `services/` that are libraries, not services: importable by all, importing no service. */
const LIBRARIES = new Set(["shared", "gen"]);
const CLIENT_MODULE = "src/client.ts";
/** A service's test kit: importable by other services' test code only. */
const TEST_KIT_MODULE = "src/testing.ts";
/** Modules a service publishes besides its client module, each to the named importers only. */
const PUBLISHED: readonly { module: string; importers: readonly string[] }[] = [
  { module: "src/migrations/index.ts", importers: ["cli"] },
];
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;

interface Violation {
  /** The importing file, relative to the repository root. */
  file: string;
  line: number;
  /** The imported file, relative to the repository root. */
  target: string;
  /** What to change. */
  fix: string;
}

/** Every import of a file (static, type-only, re-export, dynamic), with its line; comments and strings are ignored. */
function importsOf(text: string): { specifier: string; line: number }[] {
  const { importedFiles } = ts.preProcessFile(text, true, true);
  return importedFiles.map((f) => ({
    specifier: f.fileName,
    line: text.slice(0, f.pos).split("\n").length,
  }));
}

/** `services/<name>/…` → name, for a path relative to the repository root. */
function serviceOf(file: string): string | undefined {
  const [top, name] = file.split("/");
  return top === "services" ? name : undefined;
}

function isTestCode(file: string): boolean {
  return /\.test\.[cm]?[jt]s$/.test(file) || /\/(testing|bench)(\/|\.[cm]?[jt]s$)/.test(file);
}

/**
 * The imports of one file that cross a service boundary. `file` is relative to
 * the repository root with "/" separators; `clientExists` tells whether a
 * service has a client module yet (it only changes the advice).
 */
function violationsIn(
  file: string,
  text: string,
  clientExists: (service: string) => boolean = () => true,
): Violation[] {
  const from = serviceOf(file);
  if (from === undefined) return [];
  const violations: Violation[] = [];
  for (const { specifier, line } of importsOf(text)) {
    if (!specifier.startsWith(".")) continue; // a package
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
    const to = serviceOf(target);
    if (to === undefined || to === from || LIBRARIES.has(to)) continue;
    const client = `services/${to}/${CLIENT_MODULE}`;
    if (LIBRARIES.has(from)) {
      violations.push({
        file,
        line,
        target,
        fix: `services/${from} imports no service: move what it needs into services/${from}, or let the service pass it in`,
      });
      continue;
    }
    if (target === client) continue;
    if (target === `services/${to}/${TEST_KIT_MODULE}` && isTestCode(file)) continue;
    if (
      PUBLISHED.some((p) => target === `services/${to}/${p.module}` && p.importers.includes(from))
    )
      continue;
    const exportIt = clientExists(to)
      ? `export it from ${client} and import that`
      : `create ${client} exporting it and import that`;
    const fix = isTestCode(file)
      ? `start ${to} or build its fixtures with the test kit (services/shared/src/testing), or ${exportIt}`
      : `${exportIt}, or move it into services/shared if no single service owns it`;
    violations.push({ file, line, target, fix });
  }
  return violations;
}

/** Every source file under `services/`, relative to the repository root. */
function serviceFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(repoRoot, dir), { withFileTypes: true })) {
      if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (SOURCE.test(entry.name) && !entry.name.endsWith(".d.ts")) files.push(rel);
    }
  };
  walk("services");
  return files.sort();
}

function report(violations: readonly Violation[]): string {
  return [
    `${violations.length} import(s) cross a service boundary. Rule: a service imports another service only through services/<service>/${CLIENT_MODULE}; services/shared and services/gen are importable by all and import no service.`,
    ...violations.map((v) => `  ${v.file}:${v.line} imports ${v.target}\n    → ${v.fix}`),
  ].join("\n");
}

describe("service boundaries", () => {
  it("let a service import another only through its client.ts, and shared import no service", () => {
    const files = serviceFiles();
    assert.ok(files.includes("services/shared/src/boundaries.test.ts"), "the scan sees services/");
    const clientExists = (service: string) =>
      existsSync(path.join(repoRoot, "services", service, CLIENT_MODULE));
    const violations = files.flatMap((file) =>
      violationsIn(file, readFileSync(path.join(repoRoot, file), "utf8"), clientExists),
    );
    if (violations.length > 0) assert.fail(report(violations));
  });

  describe("the rule", () => {
    const targets = (file: string, text: string) =>
      violationsIn(file, text).map((v) => `${v.line}:${v.target}`);

    it("refuses another service's internals, on any kind of import, with the line", () => {
      const text = [
        "// import { x } from '../../auth/src/keys.ts' (a comment is no import)",
        'import { createJwtVerifier } from "../../auth/src/verifier.ts";',
        'import type { Reserver } from "../../seckill-core/src/store.ts";',
        'export { activityKeys } from "../../seckill-core/src/keys.ts";',
        'const main = "../../order/src/main.ts"; // a path in a string is no import',
        'const { coreService } = await import("../../seckill-core/src/service.ts");',
      ].join("\n");
      assert.deepEqual(targets("services/gateway/src/policy.ts", text), [
        "2:services/auth/src/verifier.ts",
        "3:services/seckill-core/src/store.ts",
        "4:services/seckill-core/src/keys.ts",
        "6:services/seckill-core/src/service.ts",
      ]);
    });

    it("allows another service's client.ts, the service's own files, shared, gen and packages", () => {
      const text = [
        'import { createReserver } from "../../seckill-core/src/client.ts";',
        'import { loadLimits } from "./limits.ts";',
        'import { startService } from "../../shared/src/runtime/server.ts";',
        'import { CoreService } from "../../gen/seckill/core/v1/core_pb.ts";',
        'import { activity } from "../bench/fixtures.ts";',
        'import { Redis } from "ioredis";',
      ].join("\n");
      assert.deepEqual(targets("services/seckill-app/src/sale.ts", text), []);
    });

    it("gives a service's migrations to the migrate job in cli, and to no one else", () => {
      const text = 'import { authMigrations } from "../../auth/src/migrations/index.ts";';
      assert.deepEqual(targets("services/cli/src/migrate.ts", text), []);
      assert.deepEqual(targets("services/gateway/src/service.ts", text), [
        "1:services/auth/src/migrations/index.ts",
      ]);
    });

    it("gives a service's test kit (src/testing.ts) to other services' tests and benches only", () => {
      const text = 'import { TokenIssuer } from "../../auth/src/testing.ts";';
      assert.deepEqual(targets("services/gateway/src/e2e.test.ts", text), []);
      assert.deepEqual(targets("services/gateway/bench/edge.bench.ts", text), []);
      assert.deepEqual(targets("services/gateway/src/forwarder.ts", text), [
        "1:services/auth/src/testing.ts",
      ]);
    });

    it("refuses shared and gen any service, even its client.ts", () => {
      const text = 'import { createReserver } from "../../../seckill-core/src/client.ts";';
      assert.deepEqual(targets("services/shared/src/mesh/x.ts", text), [
        "1:services/seckill-core/src/client.ts",
      ]);
    });

    it("says what to change", () => {
      const [source] = violationsIn(
        "services/seckill-app/src/sale.ts",
        'import { idProblem } from "../../seckill-core/src/validation.ts";',
      );
      assert.match(source!.fix, /export it from services\/seckill-core\/src\/client\.ts/);
      const [test] = violationsIn(
        "services/order/src/orders.test.ts",
        'import { coreService } from "../../seckill-core/src/service.ts";',
        () => false,
      );
      assert.match(test!.fix, /create services\/seckill-core\/src\/client\.ts/);
      assert.match(test!.fix, /services\/shared\/src\/testing/);
      assert.match(report([source!]), /services\/seckill-app\/src\/sale\.ts:1 imports/);
    });
  });
});
