/**
 * The Grafana dashboard of a live sale, built with Grafana's typed builders
 * (@grafana/grafana-foundation-sdk). `scripts/node24.sh node --import tsx deploy/monitoring/dashboard.ts`
 * writes it to docs/grafana-dashboard.json and to the chart (charts/seckill/files/, which the
 * grafana-dashboard ConfigMap embeds); deploy/test/monitoring.test.ts checks both copies equal
 * what this builds, and that every metric a query names is one the services export.
 *
 * Queries use raw metrics, not the recording rules, so the dashboard works on a Prometheus that
 * has no rules loaded. Labels a Prometheus may rename (the services' own `service` and
 * `instance` labels become exported_service / exported_instance when the scrape adds target
 * labels of those names) are folded back with label_replace, as in deploy/monitoring/rules.yaml.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as common from "@grafana/grafana-foundation-sdk/common";
import {
  DashboardBuilder,
  DashboardCursorSync,
  DatasourceVariableBuilder,
  MappingType,
  QueryVariableBuilder,
  RowBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  VariableRefresh,
  VariableSort,
} from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import { PanelBuilder as StateTimelineBuilder } from "@grafana/grafana-foundation-sdk/statetimeline";
import { PanelBuilder as TimeseriesBuilder } from "@grafana/grafana-foundation-sdk/timeseries";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** Where the built JSON lives: the docs copy and the one the chart embeds. */
export const DASHBOARD_FILES = [
  join(repoRoot, "docs", "grafana-dashboard.json"),
  join(repoRoot, "charts", "seckill", "files", "grafana-dashboard.json"),
];

/** Every query goes to the data source the dashboard's `datasource` variable picks. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not JavaScript's
const datasource = { type: "prometheus", uid: "${datasource}" };
const rate = "$__rate_interval";

/** `expr` with the services' own `service` label restored where the scrape renamed it. */
const ownService = (expr: string) =>
  `label_replace(${expr}, "service", "$1", "exported_service", "(.+)")`;

function query(expr: string, legend: string, refId = "A") {
  return new DataqueryBuilder()
    .datasource(datasource)
    .expr(expr)
    .legendFormat(legend)
    .range()
    .refId(refId);
}

function timeseries(title: string, description: string, unit: string) {
  return new TimeseriesBuilder()
    .title(title)
    .description(description)
    .datasource(datasource)
    .unit(unit)
    .min(0)
    .height(8)
    .span(12)
    .fillOpacity(10)
    .lineWidth(1)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.List)
        .placement(common.LegendPlacement.Bottom),
    )
    .tooltip(
      new common.VizTooltipOptionsBuilder()
        .mode(common.TooltipDisplayMode.Multi)
        .sort(common.SortOrder.Descending),
    );
}

/** p50 and p99 of a histogram, grouped by `by` (le is added). */
function quantiles(bucket: string, by: string, legend: string, fold = (e: string) => e) {
  return [0.5, 0.99].map((q, i) =>
    query(
      `histogram_quantile(${q}, sum by (${by}, le) (${fold(`rate(${bucket}[${rate}])`)}))`,
      `p${q * 100} ${legend}`,
      String.fromCharCode(65 + i),
    ),
  );
}

export function buildDashboard() {
  const activityFilter = 'activity=~"$activity"';
  const dashboard = new DashboardBuilder("Seckill: live sale")
    .uid("seckill-live-sale")
    .description(
      "A flash sale as its operators watch it: buys by result, latency per hop, the order stream, the mesh and each service's runtime. Built by deploy/monitoring/dashboard.ts; alerts in deploy/monitoring/rules.yaml, runbook in docs/runbook.md.",
    )
    .tags(["seckill"])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .refresh("10s")
    .time({ from: "now-30m", to: "now" })
    .timezone("browser")
    .withVariable(
      new DatasourceVariableBuilder("datasource").label("Data source").type("prometheus"),
    )
    .withVariable(
      new QueryVariableBuilder("activity")
        .label("Activity")
        .datasource(datasource)
        .query("label_values(seckill_order_stream_length, activity)")
        .definition("label_values(seckill_order_stream_length, activity)")
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc)
        .multi(true)
        .includeAll(true)
        .allValue(".*")
        .current({ selected: true, text: ["All"], value: ["$__all"] }),
    )

    // --- The sale -------------------------------------------------------------------------------
    .withRow(new RowBuilder("Sale"))
    .withPanel(
      timeseries(
        "Buys/s by result",
        "Buy answers per second by BuyResult, as seckill-app answered them (decided by app's own checks or by core), plus the SOLD_OUT answers the gateway gave from its local flag without forwarding.",
        "reqps",
      )
        .withTarget(
          query(`sum by (result) (rate(seckill_app_buy_results_total[${rate}]))`, "{{result}}"),
        )
        .withTarget(
          query(
            `sum(rate(seckill_gateway_sold_out_short_circuits_total[${rate}]))`,
            "SOLD_OUT at the gateway",
            "B",
          ),
        ),
    )
    .withPanel(
      timeseries(
        "Orders paid and cancelled /s",
        "Order transitions per second by new status and cause (pay, user, admin, timeout).",
        "ops",
      ).withTarget(
        query(
          `sum by (status, cause) (rate(seckill_order_state_changes_total[${rate}]))`,
          "{{status}} ({{cause}})",
        ),
      ),
    )
    .withPanel(
      timeseries(
        "Per activity: intents in the stream, orders written",
        "For each activity: the order intents in its Redis stream (one per reservation, XLEN) and the order rows the consumers have written since they started. Remaining, reserved and paid units per activity are in admin's GetStats (the admin console) until they are exported as metrics.",
        "short",
      )
        .withTarget(
          query(
            `max by (activity) (seckill_order_stream_length{${activityFilter}})`,
            "{{activity}} intents",
          ),
        )
        .withTarget(
          query(
            `sum by (activity) (seckill_order_consumed_total{outcome="inserted", ${activityFilter}})`,
            "{{activity}} orders written",
            "B",
          ),
        ),
    )
    .withPanel(
      timeseries(
        "Edge refusals /s",
        "Calls the gateway refused itself, by reason (rate limits, blacklist, authentication).",
        "reqps",
      ).withTarget(
        query(`sum by (reason) (rate(seckill_gateway_refusals_total[${rate}]))`, "{{reason}}"),
      ),
    )

    // --- Latency --------------------------------------------------------------------------------
    .withRow(new RowBuilder("Latency per hop"))
    .withPanel(
      timeseries(
        "Client side: p50 / p99 per hop",
        "Each hop as its caller sees it (balancer, network and server): gateway → seckill-app, seckill-app → seckill-core, order → seckill-core, …, by called gRPC service and method.",
        "s",
      ).targets(
        quantiles(
          "seckill_rpc_client_duration_seconds_bucket",
          "service, method",
          "{{service}}/{{method}}",
          ownService,
        ),
      ),
    )
    .withPanel(
      timeseries(
        "Server side: p50 / p99 per service and method",
        "Time each service spends serving a call, by gRPC service and method.",
        "s",
      ).targets(
        quantiles(
          "seckill_rpc_server_duration_seconds_bucket",
          "service, method",
          "{{service}}/{{method}}",
          ownService,
        ),
      ),
    )
    .withPanel(
      timeseries(
        "seckill-app Buy stages: p50 / p99",
        "Inside seckill-app's Buy: token check, admission wait, the Redis rate-limit script and the batched Reserve to core.",
        "s",
      ).targets(quantiles("seckill_app_buy_stage_seconds_bucket", "stage", "{{stage}}")),
    )
    .withPanel(
      timeseries(
        "seckill-core Redis: p50 / p99",
        "Round trips of core's Redis scripts and Reserve batch pipelines, by operation.",
        "s",
      ).targets(quantiles("seckill_core_redis_seconds_bucket", "op", "{{op}}")),
    )

    // --- Order stream ---------------------------------------------------------------------------
    .withRow(new RowBuilder("Order stream"))
    .withPanel(
      timeseries(
        "Stream lag and pending per activity",
        "Lag: intents not yet delivered to the order consumer group. Pending: delivered, not yet written and acknowledged. Both should fall back to 0 after a rush; see SeckillOrderStreamLagGrowing and SeckillOrderDrainStalled in docs/runbook.md.",
        "short",
      )
        .withTarget(
          query(
            `max by (activity) (seckill_order_stream_lag{${activityFilter}})`,
            "{{activity}} lag",
          ),
        )
        .withTarget(
          query(
            `max by (activity) (seckill_order_stream_pending{${activityFilter}})`,
            "{{activity}} pending",
            "B",
          ),
        ),
    )
    .withPanel(
      timeseries(
        "Stream entries consumed /s",
        "Entries the order consumers handled, by outcome: inserted (new order), duplicate (a redelivery), dead_lettered (malformed), deleted.",
        "ops",
      ).withTarget(
        query(
          `sum by (activity, outcome) (rate(seckill_order_consumed_total{${activityFilter}}[${rate}]))`,
          "{{activity}} {{outcome}}",
        ),
      ),
    )

    // --- Mesh -----------------------------------------------------------------------------------
    .withRow(new RowBuilder("Mesh"))
    .withPanel(
      new StateTimelineBuilder()
        .title("Breaker states")
        .description(
          "Circuit breaker of each upstream instance, the worst any caller holds: closed, half-open (probing) or open (calls go elsewhere).",
        )
        .datasource(datasource)
        .height(8)
        .span(12)
        .withTarget(
          query(
            `max by (service, upstream) (${ownService(
              `label_replace(label_replace(seckill_mesh_breaker_state, "upstream", "$1", "instance", "(.*)"), "upstream", "$1", "exported_instance", "(.+)")`,
            )})`,
            "{{service}} {{upstream}}",
          ),
        )
        .mappings([
          {
            type: MappingType.ValueToText,
            options: {
              "0": { text: "closed", color: "green", index: 0 },
              "1": { text: "half-open", color: "yellow", index: 1 },
              "2": { text: "open", color: "red", index: 2 },
            },
          },
        ])
        .thresholds(
          new ThresholdsConfigBuilder()
            .mode(ThresholdsMode.Absolute)
            .steps([{ value: null, color: "green" }]),
        ),
    )
    .withPanel(
      timeseries(
        "Registered instances per service",
        "Instances holding their etcd registration: what the other services can call. 0 is SeckillServiceNotRegistered.",
        "short",
      ).withTarget(
        query(`sum by (service) (${ownService("seckill_registry_registered")})`, "{{service}}"),
      ),
    )

    // --- Runtime --------------------------------------------------------------------------------
    .withRow(new RowBuilder("Runtime"))
    .withPanel(
      timeseries(
        "Event-loop lag p99 per instance",
        "p99 delay of each process's event loop: every call the process serves waits as long. Above 100 ms for 5 minutes is SeckillEventLoopLag.",
        "s",
      ).withTarget(
        query(
          "max by (job, instance) (seckill_process_nodejs_eventloop_lag_p99_seconds)",
          "{{job}} {{instance}}",
        ),
      ),
    )
    .withPanel(
      timeseries(
        "CPU per service",
        "CPU seconds per second of all of a service's processes (1 = one core); a Node process does its JavaScript on one core.",
        "short",
      ).withTarget(
        query(`sum by (job) (rate(seckill_process_process_cpu_seconds_total[${rate}]))`, "{{job}}"),
      ),
    )
    .withPanel(
      timeseries(
        "Resident memory per instance",
        "Resident set size of each process.",
        "bytes",
      ).withTarget(
        query(
          "max by (job, instance) (seckill_process_process_resident_memory_bytes)",
          "{{job}} {{instance}}",
        ),
      ),
    )
    .build();
  // Rows and panels in order, each with its own id (Grafana links and the sidecar rely on them).
  dashboard.panels?.forEach((panel, i) => {
    panel.id = i + 1;
  });
  return dashboard;
}

/** The JSON written to DASHBOARD_FILES (before Biome formats it; compare parsed). */
export function dashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const file of DASHBOARD_FILES) writeFileSync(file, dashboardJson());
  // The repository's formatter owns the files' layout (`biome check` runs in CI).
  execFileSync(
    join(repoRoot, "node_modules", ".bin", "biome"),
    ["format", "--write", ...DASHBOARD_FILES],
    { stdio: "inherit" },
  );
  console.log(`wrote ${DASHBOARD_FILES.map((f) => f.slice(repoRoot.length)).join(", ")}`);
}
