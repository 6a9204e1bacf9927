/**
 * Reading one metric in tests, from wherever it lives: this process's
 * registry (services started in-process), a service's /metrics endpoint (a
 * child process), or the text of a page already fetched.
 */
import { Registry } from "prom-client";

/**
 * Where to read: a prom-client Registry (usually `metricsRegistry`), a
 * metrics port, anything with a `metricsPort` (a started service or
 * process), a URL of a /metrics page, or the text of such a page.
 */
export type MetricSource = Registry | number | { readonly metricsPort: number } | URL | string;

/** One series: the sample name (`x_count` for a histogram's count), its labels and value. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricValueOptions {
  /** Throw when no series matches, instead of answering 0 (a gauge never set is not 0). */
  required?: boolean;
}

/**
 * The sum of the series of `name` whose labels include every label given (0
 * when none matches, unless `required`). For a histogram or summary, `name`
 * counts its observations (the `_count` series); ask for `<name>_sum` for the sum.
 */
export async function metricValue(
  source: MetricSource,
  name: string,
  labels: Record<string, string> = {},
  options: MetricValueOptions = {},
): Promise<number> {
  const series = (await metricSamples(source, name)).filter(
    (s) =>
      (s.name === name || s.name === `${name}_count`) &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (options.required && series.length === 0)
    throw new Error(`no series of ${name} with labels ${JSON.stringify(labels)}`);
  return series.reduce((sum, s) => sum + s.value, 0);
}

const suffixes = ["_count", "_sum", "_bucket"];

/** Every sample of the metric family that `name` belongs to (all of them for a page's text). */
export async function metricSamples(source: MetricSource, name: string): Promise<MetricSample[]> {
  if (source instanceof Registry) {
    const family =
      source.getSingleMetric(name) ??
      suffixes
        .filter((s) => name.endsWith(s))
        .map((s) => source.getSingleMetric(name.slice(0, -s.length)))
        .find((m) => m !== undefined);
    if (!family) return [];
    const data = await family.get();
    return data.values.map((v) => ({
      name: (v as { metricName?: string }).metricName ?? data.name,
      labels: Object.fromEntries(Object.entries(v.labels).map(([k, x]) => [k, String(x)])),
      value: v.value,
    }));
  }
  return parseMetrics(await metricsText(source));
}

async function metricsText(source: Exclude<MetricSource, Registry>): Promise<string> {
  let url: string;
  if (typeof source === "number") url = `http://127.0.0.1:${source}/metrics`;
  else if (source instanceof URL) url = source.href;
  else if (typeof source === "string") {
    if (!/^https?:\/\//.test(source)) return source;
    url = source;
  } else url = `http://127.0.0.1:${source.metricsPort}/metrics`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.text();
}

/** Parses the Prometheus text format: `name{label="value",…} value [timestamp]` per line. */
export function parseMetrics(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const nameEnd = line.search(/[{\s]/);
    if (nameEnd <= 0) continue;
    const name = line.slice(0, nameEnd);
    const labels: Record<string, string> = {};
    let rest = line.slice(nameEnd);
    if (rest.startsWith("{")) {
      let i = 1;
      for (;;) {
        while (rest[i] === " " || rest[i] === ",") i++;
        if (rest[i] === "}" || i >= rest.length) break;
        const eq = rest.indexOf("=", i);
        const key = rest.slice(i, eq).trim();
        let value = "";
        i = eq + 2; // past ="
        for (; i < rest.length && rest[i] !== '"'; i++) {
          if (rest[i] === "\\") {
            i++;
            value += rest[i] === "n" ? "\n" : rest[i];
          } else value += rest[i];
        }
        labels[key] = value;
        i++; // past the closing quote
      }
      rest = rest.slice(i + 1);
    }
    const text = rest.trim().split(/\s+/)[0] ?? "";
    const value = text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);
    out.push({ name, labels, value });
  }
  return out;
}
