/**
 * A private Prometheus (Debian's `prometheus` package) on a loopback port, for
 * `seckill up --observe`: it scrapes the targets of a file_sd file that the
 * caller rewrites (writeTargets) and loads the alert rules of deploy/monitoring.
 */
import { copyFile, mkdir, rename, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { join } from "node:path";
import { ensureBinary } from "./binaries.ts";
import {
  handleOf,
  type ManagedServer,
  retryOnPortClash,
  type ServerHandle,
  startManaged,
} from "./managed-server.ts";
import { freePort, LOOPBACK } from "./net.ts";

export interface PrometheusOptions {
  /** A rules file copied next to the configuration and loaded (rule_files). */
  rulesFile?: string;
  /**
   * Targets in the file_sd file from the start, so that the first round of
   * discovery (Prometheus passes targets on every 5 s) already has them.
   */
  initialTargets?: TargetGroup[];
  /** Scrape and rule evaluation interval; default "1s". */
  scrapeInterval?: string;
  readyTimeoutMs?: number;
}

/** One file_sd target group: addresses plus the labels they all get. */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

export interface PrometheusServer extends ServerHandle {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** The file_sd file Prometheus re-reads (every second); written by writeTargets. */
  readonly targetsFile: string;
  /** Replaces the scraped targets (atomically: a rename, so Prometheus never reads half a file). */
  writeTargets(groups: TargetGroup[]): Promise<void>;
}

export async function startPrometheus(options: PrometheusOptions = {}): Promise<PrometheusServer> {
  const binary = await ensureBinary("prometheus", "prometheus", {
    installHint: "Install it with: sudo apt-get install -y prometheus",
  });
  const interval = options.scrapeInterval ?? "1s";
  return retryOnPortClash(async () => {
    const port = await freePort();
    const url = `http://${LOOPBACK}:${port}`;
    const server = await startManaged(
      "prometheus",
      (dataDir) => ({
        what: `prometheus on ${url}`,
        command: binary,
        args: [
          `--config.file=${join(dataDir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dataDir, "data")}`,
          `--web.listen-address=${LOOPBACK}:${port}`,
          "--storage.tsdb.retention.time=1d",
          "--log.level=warn",
        ],
        isReady: () => isReady(url),
        readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
      }),
      async (dataDir) => {
        await mkdir(join(dataDir, "data"));
        await writeFile(join(dataDir, "targets.json"), targetsJson(options.initialTargets ?? []));
        const ruleFiles: string[] = [];
        if (options.rulesFile) {
          await copyFile(options.rulesFile, join(dataDir, "rules.yaml"));
          ruleFiles.push(join(dataDir, "rules.yaml"));
        }
        await writeFile(join(dataDir, "prometheus.yml"), config(dataDir, interval, ruleFiles));
      },
    );
    return prometheusHandle(server, port, targetsJson(options.initialTargets ?? []));
  });
}

/** JSON is YAML: no YAML library needed. */
function config(dataDir: string, interval: string, ruleFiles: string[]): string {
  return `${JSON.stringify(
    {
      global: {
        scrape_interval: interval,
        evaluation_interval: interval,
        scrape_timeout: interval,
      },
      rule_files: ruleFiles,
      scrape_configs: [
        {
          job_name: "seckill",
          file_sd_configs: [{ files: [join(dataDir, "targets.json")], refresh_interval: "1s" }],
        },
      ],
    },
    null,
    2,
  )}\n`;
}

/** GET /-/ready answers 200 once the TSDB is open and the configuration loaded. */
function isReady(url: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const request = get(`${url}/-/ready`, { agent: false, timeout: 1000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on("timeout", () => request.destroy(new Error("/-/ready timed out")));
    request.on("error", reject);
  });
}

function targetsJson(groups: TargetGroup[]): string {
  return `${JSON.stringify(groups, null, 2)}\n`;
}

function prometheusHandle(server: ManagedServer, port: number, written: string): PrometheusServer {
  const url = `http://${LOOPBACK}:${port}`;
  const targetsFile = join(server.dataDir, "targets.json");
  let last = written;
  // Object.assign keeps the shared part's live `pid` getter (a spread would freeze it).
  return Object.assign(handleOf(server), {
    port,
    url,
    targetsFile,
    async writeTargets(groups: TargetGroup[]) {
      const json = targetsJson(groups);
      if (json === last) return;
      const temp = `${targetsFile}.tmp`;
      await writeFile(temp, json);
      await rename(temp, targetsFile);
      last = json;
    },
    describe: () => `prometheus    ${url}  pid ${server.pid}`,
  });
}
