/**
 * The sale's report three ways: a table for the terminal, JSON for tools, and
 * a self-contained HTML page with charts for people who would rather look.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderTable } from "../table.ts";
import type { SaleReport } from "./sale.ts";

export interface InstanceShare {
  service: string;
  instance: string;
  method: string;
  calls: number;
}

/** Calls each instance served, read from its Prometheus endpoint. */
export async function scrapeShares(
  instances: readonly { service: string; instanceId: string; metricsPort: number }[],
  methods: Record<string, string>,
): Promise<InstanceShare[]> {
  const shares: InstanceShare[] = [];
  for (const inst of instances) {
    const method = methods[inst.service];
    if (!method) continue;
    const body = await fetch(`http://127.0.0.1:${inst.metricsPort}/metrics`)
      .then((r) => r.text())
      .catch(() => "");
    let calls = 0;
    const pattern = new RegExp(
      `^seckill_rpc_server_duration_seconds_count\\{[^}]*method="${method}"[^}]*\\} (\\d+)`,
      "gm",
    );
    for (const m of body.matchAll(pattern)) calls += Number(m[1]);
    shares.push({ service: inst.service, instance: inst.instanceId, method, calls });
  }
  return shares;
}

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export function checks(report: SaleReport) {
  const expected = Math.min(report.stock, report.buyers);
  const { remaining, reserved, paid } = report.stats;
  return [
    {
      check: "buyers served == buyers",
      ok: report.load.completed === report.buyers,
      value: `${report.load.completed} / ${report.buyers}`,
    },
    {
      check: "successes == stock",
      ok: report.successes === expected,
      value: `${report.successes} / ${expected}`,
    },
    { check: "oversell == 0", ok: report.oversell === 0, value: String(report.oversell) },
    {
      check: "orders in MySQL == successes",
      ok: report.ordersInMysql === report.successes,
      value: `${report.ordersInMysql} / ${report.successes}`,
    },
    {
      check: "remaining + reserved + paid == stock",
      ok: remaining + reserved + paid === report.stock,
      value: `${remaining} + ${reserved} + ${paid}`,
    },
    {
      check: "reconcile mismatches == 0",
      ok: report.reconcileMismatches === 0,
      value: String(report.reconcileMismatches),
    },
  ];
}

export function renderText(report: SaleReport, shares: readonly InstanceShare[] = []): string {
  const { load } = report;
  const lat = load.latency.summary();
  const seconds = load.durationMs / 1000;
  const out: string[] = [];
  out.push(`Flash sale ${report.activityId} through ${report.target}`);
  out.push(
    `${report.buyers} buyers (provisioned in ${report.provisionMs} ms), stock ${report.stock}, ` +
      `${load.model.kind === "closed" ? `${load.model.concurrency} in flight` : `${load.model.rate}/s offered`}`,
  );
  out.push(
    `rush: served ${load.completed} / ${report.buyers} buyers in ${seconds.toFixed(1)} s ` +
      `(${Math.round(load.completed / Math.max(seconds, 1e-3))} buyers/s)`,
  );
  out.push("");
  out.push(
    renderTable(
      [
        "buyers",
        "seconds",
        "buyers/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "retried",
        "came back",
      ],
      [
        [
          load.completed,
          Number(seconds.toFixed(2)),
          Math.round(load.completed / seconds),
          ms(lat.p50),
          ms(lat.p90),
          ms(lat.p99),
          ms(lat.p999),
          ms(lat.max),
          load.retried,
          load.comebacks,
        ],
      ],
    ),
  );
  out.push("");
  out.push(
    renderTable(
      ["outcome", "count", "share"],
      Object.entries(load.outcomes)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => [k, v, `${((100 * v) / Math.max(1, load.completed)).toFixed(1)} %`]),
    ),
  );
  out.push("");
  out.push(
    renderTable(
      ["second", "attempts", "reserved", "p50 ms", "p99 ms"],
      load.timeline.map((b) => [
        b.second,
        b.completed,
        b.reserved,
        ms(b.latency.percentile(50)),
        ms(b.latency.percentile(99)),
      ]),
    ),
  );
  if (shares.length > 0) {
    out.push("");
    out.push(
      renderTable(
        ["service", "instance", "method", "calls"],
        shares.map((s) => [s.service, s.instance, s.method, s.calls]),
      ),
    );
  }
  out.push("");
  out.push(
    `drain: ${report.drained ? `all orders in MySQL ${report.drainMs} ms after the rush` : `INCOMPLETE after ${report.drainMs} ms`}`,
  );
  out.push("");
  out.push(
    renderTable(
      ["check", "result", "value"],
      checks(report).map((c) => [c.check, c.ok ? "ok" : "FAILED", c.value]),
    ),
  );
  for (const d of report.reconcileDetails) out.push(`  mismatch: ${d}`);
  return out.join("\n");
}

function svgLineChart(
  title: string,
  xs: number[],
  series: { name: string; color: string; values: number[] }[],
  unit: string,
): string {
  const w = 640;
  const h = 220;
  const pad = 40;
  const maxY = Math.max(1, ...series.flatMap((s) => s.values));
  const maxX = Math.max(1, xs.length - 1);
  const x = (i: number) => pad + ((w - 2 * pad) * i) / maxX;
  const y = (v: number) => h - pad - ((h - 2 * pad) * v) / maxY;
  const lines = series
    .map(
      (s) =>
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`,
    )
    .join("");
  const legend = series
    .map((s, i) => `<text x="${pad + i * 120}" y="16" fill="${s.color}">${s.name}</text>`)
    .join("");
  return `<figure><figcaption>${title}</figcaption><svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">
<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#999"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="#999"/>
<text x="4" y="${pad}" font-size="11">${maxY.toFixed(maxY < 10 ? 1 : 0)} ${unit}</text><text x="4" y="${h - pad}" font-size="11">0</text>
<text x="${w - pad}" y="${h - 8}" font-size="11" text-anchor="end">${maxX} s</text>${legend}${lines}</svg></figure>`;
}

export function renderHtml(report: SaleReport, shares: readonly InstanceShare[] = []): string {
  const xs = report.load.timeline.map((b) => b.second);
  const throughput = svgLineChart(
    "Throughput (per second)",
    xs,
    [
      {
        name: "attempts/s",
        color: "#2563eb",
        values: report.load.timeline.map((b) => b.completed),
      },
      { name: "reserved/s", color: "#16a34a", values: report.load.timeline.map((b) => b.reserved) },
    ],
    "/s",
  );
  const latency = svgLineChart(
    "Latency over time",
    xs,
    [
      {
        name: "p50",
        color: "#2563eb",
        values: report.load.timeline.map((b) => b.latency.percentile(50)),
      },
      {
        name: "p99",
        color: "#dc2626",
        values: report.load.timeline.map((b) => b.latency.percentile(99)),
      },
    ],
    "ms",
  );
  const esc = (s: string) =>
    s.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]!);
  const rows = checks(report)
    .map(
      (c) =>
        `<tr><td>${esc(c.check)}</td><td class="${c.ok ? "ok" : "bad"}">${c.ok ? "ok" : "FAILED"}</td><td>${esc(c.value)}</td></tr>`,
    )
    .join("");
  const shareRows = shares
    .map(
      (s) =>
        `<tr><td>${s.service}</td><td>${s.instance}</td><td>${s.method}</td><td>${s.calls}</td></tr>`,
    )
    .join("");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Seckill sale report ${esc(report.activityId)}</title>
<style>body{font:14px system-ui,sans-serif;max-width:720px;margin:2em auto;padding:0 1em}td,th{padding:2px 10px;text-align:left}
.ok{color:#16a34a}.bad{color:#dc2626;font-weight:bold}pre{background:#f4f4f5;padding:1em;overflow:auto;font-size:12px}figure{margin:1em 0}</style></head>
<body><h1>Flash sale report</h1><p>Activity <code>${esc(report.activityId)}</code> at ${esc(report.load.startedAt)} through <code>${esc(report.target)}</code>.</p>
<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>value</th></tr>${rows}</table>
${throughput}${latency}
${shares.length ? `<h2>Split across instances</h2><table><tr><th>service</th><th>instance</th><th>method</th><th>calls</th></tr>${shareRows}</table>` : ""}
<h2>Details</h2><pre>${esc(renderText(report, shares))}</pre></body></html>\n`;
}

export function toJson(report: SaleReport, shares: readonly InstanceShare[] = []) {
  return {
    ...report,
    load: {
      ...report.load,
      orderIds: undefined,
      latency: report.load.latency.summary(),
      timeline: report.load.timeline.map((b) => ({
        second: b.second,
        completed: b.completed,
        reserved: b.reserved,
        p50: b.latency.percentile(50),
        p99: b.latency.percentile(99),
      })),
    },
    shares,
    checks: checks(report),
  };
}

/** Writes report.json and report.html into `dir`; returns their paths. */
export function writeReport(
  dir: string,
  report: SaleReport,
  shares: readonly InstanceShare[] = [],
): { json: string; html: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, "report.json");
  const html = join(dir, "report.html");
  writeFileSync(json, `${JSON.stringify(toJson(report, shares), null, 2)}\n`);
  writeFileSync(html, renderHtml(report, shares));
  return { json, html };
}
