/**
 * deploy/monitoring: the Prometheus rules (promtool check rules, promtool test rules, a runbook
 * section per alert), the Grafana dashboard (equal to what deploy/monitoring/dashboard.ts builds
 * now, in docs/ and in the chart), every PromQL expression of both parsed, with each metric it
 * names one a service exports (read from the services' registrations in the code), and the
 * chart's PrometheusRule and dashboard ConfigMap rendered and validated.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { parser } from "@prometheus-io/lezer-promql";
import { collectDefaultMetrics, Registry } from "prom-client";
import { parse as parseYaml } from "yaml";
import { buildDashboard, DASHBOARD_FILES } from "../monitoring/dashboard.ts";
import { chartDir, type K8sObject, renderChart, repoRoot, validateObject } from "./kube.ts";

const run = promisify(execFile);
const monitoringDir = join(repoRoot, "deploy", "monitoring");
const rulesFile = join(monitoringDir, "rules.yaml");
const chartRulesFile = join(chartDir, "files", "prometheus-rules.yaml");
const read = (path: string) => readFileSync(path, "utf8");

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: Rule[];
}
const groups = (parseYaml(read(rulesFile)) as { groups: RuleGroup[] }).groups;
const rules = groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert);

// --- promtool -------------------------------------------------------------------------------------

const INSTALL_PROMTOOL =
  "promtool not found: `bash scripts/setup.sh` (run by npm test) installs Debian's prometheus package, or run `sudo apt-get install -y --no-install-recommends prometheus`";

function promtool(): string {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, "promtool"))) return join(dir, "promtool");
  }
  throw new Error(INSTALL_PROMTOOL);
}

async function runPromtool(args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(promtool(), args, { cwd: repoRoot });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    assert.fail(`promtool ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? e.message}`);
  }
}

describe("Prometheus rules", () => {
  it("pass `promtool check rules`", async () => {
    const out = await runPromtool(["check", "rules", relative(repoRoot, rulesFile)]);
    assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it("pass their unit tests (`promtool test rules`)", async () => {
    const out = await runPromtool([
      "test",
      "rules",
      relative(repoRoot, join(monitoringDir, "rules.test.yaml")),
    ]);
    assert.match(out, /SUCCESS/);
  });

  it("test every alert in rules.test.yaml", () => {
    const tests = parseYaml(read(join(monitoringDir, "rules.test.yaml"))) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const fired = new Set(
      tests.tests.flatMap((t) =>
        (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
      ),
    );
    const untested = alerts.map((a) => a.alert!).filter((name) => !fired.has(name));
    assert.deepEqual(untested, [], "alerts no test sees firing");
  });

  it("give every alert a severity and a runbook section in docs/runbook.md", () => {
    const runbook = read(join(repoRoot, "docs", "runbook.md"));
    const anchors = new Set(
      [...runbook.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, "")
          .replace(/ /g, "-"),
      ),
    );
    for (const a of alerts) {
      assert.match(a.labels?.severity ?? "", /^(page|warning)$/, `${a.alert}: severity`);
      assert.ok(a.annotations?.summary && a.annotations.description, `${a.alert}: summary`);
      const runbookRef = a.annotations?.runbook ?? "";
      assert.equal(runbookRef, `docs/runbook.md#${a.alert!.toLowerCase()}`, a.alert);
      assert.ok(anchors.has(a.alert!.toLowerCase()), `docs/runbook.md has no section ${a.alert}`);
    }
  });

  it("page on oversell and on a service with no registered instance", () => {
    const pages = alerts.filter((a) => a.labels?.severity === "page").map((a) => a.alert);
    assert.deepEqual(pages.sort(), ["SeckillOversell", "SeckillServiceNotRegistered"]);
  });

  it("record what an alert reads earlier in the alert's own group (evaluated in order)", () => {
    const recordedIn = new Map(
      groups.flatMap((g) => g.rules.filter((r) => r.record).map((r) => [r.record!, g.name])),
    );
    for (const g of groups) {
      const before = new Set<string>();
      for (const r of g.rules) {
        if (r.record) before.add(r.record);
        if (!r.alert) continue;
        for (const { metric } of selectors(r.expr)) {
          if (recordedIn.has(metric))
            assert.ok(
              before.has(metric),
              `${r.alert} reads ${metric}, recorded later or elsewhere`,
            );
        }
      }
    }
  });

  it("are the same in the chart (files/prometheus-rules.yaml is a copy)", () => {
    assert.equal(
      read(chartRulesFile),
      read(rulesFile),
      "run: cp deploy/monitoring/rules.yaml charts/seckill/files/prometheus-rules.yaml",
    );
  });
});

// --- Grafana dashboard ----------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: the dashboard's JSON model
type Json = any;

/** Every Prometheus query of the dashboard: [where, expr]. */
function dashboardQueries(dashboard: Json): [string, string][] {
  const out: [string, string][] = [];
  for (const panel of dashboard.panels ?? []) {
    for (const target of panel.targets ?? []) {
      if (target.expr) out.push([`panel "${panel.title}" ${target.refId}`, target.expr]);
    }
  }
  return out;
}

describe("Grafana dashboard", () => {
  const built = JSON.parse(JSON.stringify(buildDashboard()));

  for (const file of DASHBOARD_FILES) {
    it(`${relative(repoRoot, file)} is what deploy/monitoring/dashboard.ts builds now`, () => {
      assert.deepEqual(
        JSON.parse(read(file)),
        built,
        "run: scripts/node24.sh node --import tsx deploy/monitoring/dashboard.ts",
      );
    });
  }

  it("shows what a sale needs", () => {
    const titles = built.panels.map((p: Json) => p.title as string);
    for (const want of [
      "Buys/s by result",
      "Client side: p50 / p99 per hop",
      "Stream lag and pending per activity",
      "Breaker states",
      "Event-loop lag p99 per instance",
      "CPU per service",
    ]) {
      assert.ok(titles.includes(want), `no panel "${want}"`);
    }
    const ids = built.panels.map((p: Json) => p.id);
    assert.equal(new Set(ids).size, ids.length, "panel ids are not unique");
    for (const [where, expr] of dashboardQueries(built)) {
      assert.ok(!/\[\d+[smh]\]/.test(expr), `${where}: a fixed range; use $__rate_interval`);
    }
  });
});

// --- Every metric a query names is exported --------------------------------------------------------

/** The folders whose code runs in the six services. */
const SERVICE_SOURCES = [
  "shared",
  "gateway",
  "auth",
  "seckill-app",
  "seckill-core",
  "order",
  "admin",
].map((s) => join(repoRoot, "services", s, "src"));

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "testing") out.push(...sourceFiles(path));
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) {
      out.push(path);
    }
  }
  return out;
}

interface Exported {
  /** Series names the metric exports (histograms: _bucket, _sum, _count too). */
  names: string[];
  /** Its own label names; undefined when the code does not list them plainly. */
  labels: string[] | undefined;
}

const STRING = String.raw`"(?:[^"\\]|\\.)*"`;
const SUFFIXES: Record<string, string[]> = {
  counter: [""],
  gauge: [""],
  histogram: ["", "_bucket", "_sum", "_count"],
  summary: ["", "_sum", "_count"],
};

/**
 * The metrics the services register, read from the code: the helpers of
 * shared/src/runtime/metrics.ts (`counter("name", "help", ["label", …])`, gauge, histogram), direct
 * prom-client constructors (`new Gauge({ name: "…", labelNames: […] })`), and prom-client's
 * default metrics under the prefix metrics.ts gives them.
 */
async function exportedMetrics(): Promise<Map<string, Exported>> {
  const metrics = new Map<string, Exported>();
  const add = (type: string, name: string, labels: string[] | undefined) => {
    const names = SUFFIXES[type]!.map((s) => name + s);
    for (const n of names) metrics.set(n, { names, labels });
  };
  const labelList = (text: string | undefined) =>
    text === undefined ? undefined : [...text.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
  const helper = new RegExp(
    String.raw`\b(counter|gauge|histogram)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"\s*,\s*${STRING}(?:\s*\+\s*${STRING})*\s*(?:,\s*(\[[^\]]*\]))?`,
    "g",
  );
  const direct =
    /new (Counter|Gauge|Histogram|Summary)\b[^{]*\{\s*name:\s*"([^"]+)"(?:[^}]*?labelNames:\s*(\[[^\]]*\]))?/g;
  let prefix: string | undefined;
  for (const file of SERVICE_SOURCES.flatMap(sourceFiles)) {
    const code = read(file);
    for (const m of code.matchAll(helper)) add(m[1]!, m[2]!, labelList(m[3]) ?? []);
    for (const m of code.matchAll(direct)) add(m[1]!.toLowerCase(), m[2]!, labelList(m[3]) ?? []);
    const defaults = /collectDefaultMetrics\(\{[^}]*prefix:\s*"([^"]*)"/.exec(code);
    if (defaults) prefix = defaults[1];
  }
  assert.ok(prefix !== undefined, "collectDefaultMetrics with a prefix not found in services/");
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  for (const m of await registry.getMetricsAsJSON()) add(String(m.type), m.name, undefined);
  return metrics;
}

/** Labels a scrape adds or renames (the Operator's target labels, exported_* on a clash). */
const TARGET_LABELS = new Set([
  "namespace",
  "job",
  "instance",
  "pod",
  "container",
  "endpoint",
  "service",
  "exported_service",
  "exported_instance",
]);

interface Selector {
  metric: string;
  labels: string[];
}

/** Parses one PromQL expression; throws on a syntax error. Returns its vector selectors. */
function selectors(expr: string): Selector[] {
  const tree = parser.parse(expr);
  const errors: string[] = [];
  const found: Selector[] = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError)
        errors.push(
          `at ${node.from}: "${expr.slice(Math.max(0, node.from - 20), node.from + 20)}"`,
        );
      if (node.name !== "VectorSelector") return;
      const metric = node.node.getChild("Identifier");
      const matchers = node.node.getChild("LabelMatchers");
      const labels: string[] = [];
      if (matchers) {
        const cursor = matchers.cursor();
        do {
          if (cursor.name === "LabelName") labels.push(expr.slice(cursor.from, cursor.to));
        } while (cursor.next() && cursor.from < matchers.to);
      }
      found.push({ metric: metric ? expr.slice(metric.from, metric.to) : "", labels });
    },
  });
  if (errors.length > 0) throw new Error(`syntax error ${errors.join("; ")}`);
  return found;
}

/** Grafana's variables, replaced by values PromQL accepts. */
const grafanaVariables = (expr: string) =>
  expr.replaceAll("$__rate_interval", "5m").replaceAll("$__range", "1h").replace(/\$\w+/g, ".*");

describe("PromQL of the rules and the dashboard", () => {
  const recorded = new Set(rules.filter((r) => r.record).map((r) => r.record!));
  const dashboard = JSON.parse(read(DASHBOARD_FILES[0]!));
  const expressions: [string, string][] = [
    ...rules.map((r): [string, string] => [`rule ${r.record ?? r.alert}`, r.expr]),
    ...dashboardQueries(dashboard).map(([where, expr]): [string, string] => [
      `dashboard ${where}`,
      grafanaVariables(expr),
    ]),
  ];

  it("parses, and names only metrics a service exports, with labels it has", async () => {
    const exported = await exportedMetrics();
    assert.ok(exported.has("seckill_app_buy_results_total"), "registrations not found");
    assert.ok(exported.has("seckill_process_process_cpu_seconds_total"), "default metrics");
    const problems: string[] = [];
    let names = 0;
    for (const [where, expr] of expressions) {
      let found: Selector[];
      try {
        found = selectors(expr);
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
        continue;
      }
      assert.ok(found.length > 0, `${where}: no metric`);
      for (const { metric, labels } of found) {
        names++;
        if (!metric) {
          problems.push(`${where}: a selector without a metric name`);
          continue;
        }
        if (recorded.has(metric)) continue;
        const m = exported.get(metric);
        if (!m) {
          problems.push(`${where}: ${metric} is not exported by any service`);
          continue;
        }
        if (!m.labels) continue;
        const known = new Set([
          ...m.labels,
          ...TARGET_LABELS,
          ...(metric.endsWith("_bucket") ? ["le"] : []),
        ]);
        for (const label of labels) {
          if (!known.has(label)) problems.push(`${where}: ${metric} has no label ${label}`);
        }
      }
    }
    assert.deepEqual(problems, []);
    assert.ok(names > 20, `only ${names} metric references found`);
  });

  it("names exported metrics in the dashboard's variables too", async () => {
    const exported = await exportedMetrics();
    for (const v of dashboard.templating.list) {
      if (v.type !== "query") continue;
      const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(v.query);
      assert.ok(m, `variable ${v.name}: ${v.query}`);
      assert.ok(exported.get(m[1]!)?.labels?.includes(m[2]!), `variable ${v.name}: ${v.query}`);
    }
  });
});

// --- The chart ------------------------------------------------------------------------------------

describe("the chart's PrometheusRule and dashboard ConfigMap", () => {
  const defaults = join(chartDir, "ci", "default-values.yaml");
  const isDashboard = (o: K8sObject) =>
    o.kind === "ConfigMap" && o.metadata.name.endsWith("-dashboard");

  it("are off by default", async () => {
    const objects = await renderChart([defaults]);
    assert.equal(objects.filter((o) => o.kind === "PrometheusRule").length, 0);
    assert.equal(objects.filter(isDashboard).length, 0);
  });

  it("render the rules file as a valid PrometheusRule, with alert labels and runbook links", async () => {
    const objects = await renderChart(
      [defaults],
      [
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "prometheusRule.alertLabels.team=shop",
        "prometheusRule.runbookBaseUrl=https://git.example.com/seckill/docs/runbook.md",
      ],
    );
    const rule = objects.find((o) => o.kind === "PrometheusRule");
    assert.ok(rule, "no PrometheusRule");
    await validateObject(rule);
    assert.equal(rule.metadata.labels?.release, "kube-prometheus-stack");
    assert.equal(rule.metadata.labels?.["app.kubernetes.io/instance"], "seckill");
    const expected = groups.map((g) => ({
      ...g,
      rules: g.rules.map((r) =>
        r.alert
          ? {
              ...r,
              labels: { team: "shop", ...r.labels },
              annotations: {
                ...r.annotations,
                runbook_url: `https://git.example.com/seckill/docs/runbook.md#${r.alert.toLowerCase()}`,
              },
            }
          : r,
      ),
    }));
    assert.deepEqual(rule.spec.groups, expected);
  });

  it("render the dashboard ConfigMap for Grafana's sidecar", async () => {
    const objects = await renderChart(
      [defaults],
      ["grafanaDashboard.enabled=true", "grafanaDashboard.annotations.grafana_folder=Shop"],
    );
    const cm = objects.find(isDashboard);
    assert.ok(cm, "no dashboard ConfigMap");
    await validateObject(cm);
    assert.equal(cm.metadata.labels?.grafana_dashboard, "1");
    assert.equal(cm.metadata.namespace, "shop");
    assert.equal(cm.metadata.annotations?.grafana_folder, "Shop");
    const files = Object.keys(cm.data);
    assert.deepEqual(files, ["seckill-live-sale.json"]);
    assert.deepEqual(JSON.parse(cm.data[files[0]!]), JSON.parse(read(DASHBOARD_FILES[0]!)));
  });
});
