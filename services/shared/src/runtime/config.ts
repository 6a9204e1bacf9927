import { hostname } from "node:os";
import { z } from "zod";

/** A comma-separated env list, e.g. ETCD_ENDPOINTS=http://a:2379,http://b:2379. */
export const csv = z
  .string()
  .transform((s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string()).min(1));

/*
 * Env field helpers: every service's config.ts builds its schema from these,
 * so a number, a duration or a yes/no reads the same way everywhere.
 */

/** A TCP port; 0 picks a free one. */
export const port = z.coerce.number().int().min(0).max(65535);

/** An integer from `min` to `max`, `fallback` when unset. */
export const int = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** An integer of at least `min` (no upper bound), `fallback` when unset. */
export const intAtLeast = (min: number, fallback: number) =>
  z.coerce.number().int().min(min).default(fallback);

/** A duration in milliseconds (an integer, 0 or more unless `min` says otherwise), `fallback` when unset. */
export const millis = (fallback: number, min = 0) => intAtLeast(min, fallback);

const FLAG_WORDS = ["true", "false", "1", "0", "yes", "no", ""] as const;

/**
 * A yes/no setting: true/false, 1/0 or yes/no in any case; unset or empty is
 * `fallback`. (z.coerce.boolean would read "false" as true.)
 */
export const flag = (fallback = false) =>
  z
    .string()
    .transform((s) => s.toLowerCase())
    .pipe(z.enum(FLAG_WORDS, { error: "must be true/false, 1/0 or yes/no" }))
    .transform((v) => (v === "" ? fallback : v === "true" || v === "1" || v === "yes"))
    .default(fallback);

/** The settings every service reads; services extend it with their own. */
export const baseConfigSchema = z.object({
  HOST: z.string().default("127.0.0.1"),
  /** Address announced in etcd; defaults to HOST (in Kubernetes: the pod IP). */
  ADVERTISE_HOST: z.string().optional(),
  PORT: port.default(0),
  METRICS_PORT: port.default(0),
  INSTANCE_ID: z.string().min(1).default(`${hostname()}-${process.pid}`),
  ZONE: z.string().default("local"),
  WEIGHT: int(1, 1000, 1),
  VERSION: z.string().default(process.env.npm_package_version ?? "dev"),
  ETCD_ENDPOINTS: csv.default(["http://127.0.0.1:2379"]),
  REGISTRATION_TTL_SECONDS: int(2, 300, 10),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** gRPC server reflection (grpcurl, buf curl describe and call without .proto files). */
  REFLECTION: flag(true),
  OTEL_TRACES_EXPORTER: z.enum(["none", "console", "otlp"]).default("none"),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
  /** After NOT_SERVING and deregistration, how long to keep serving while clients notice. */
  SHUTDOWN_DELAY_MS: millis(1000),
  /** Upper bound on draining in-flight calls before the server is closed hard. */
  SHUTDOWN_TIMEOUT_MS: millis(10_000),
  /** Per-instance call timeout used by the mesh clients' breakers. */
  CALL_TIMEOUT_MS: millis(5000),
});

export type BaseConfig = z.infer<typeof baseConfigSchema>;

/** Variables whose values must never be printed, even in an error. */
const isSecret = (name: string) => /KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL|_URI$|_URL$/i.test(name);

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses env against the schema and throws one readable error listing every bad variable. */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.join(".") || "(env)";
    const variable = String(issue.path[0]);
    const value = env[variable];
    const shown =
      value === undefined
        ? "unset"
        : isSecret(variable)
          ? "value hidden"
          : `got ${JSON.stringify(value)}`;
    return `  ${name}: ${issue.message} (${shown})`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
}
