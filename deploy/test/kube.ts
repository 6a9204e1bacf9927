/**
 * Helpers of the deployment checks: find helm and kustomize, render the chart and the dev
 * manifests, and validate every object against the Kubernetes schemas (kubernetes-models).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import ts from "typescript";
import { parseAllDocuments } from "yaml";

const run = promisify(execFile);

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const chartDir = join(repoRoot, "charts", "seckill");
export const ciValuesFiles = readdirSync(join(chartDir, "ci"))
  .filter((f) => f.endsWith("-values.yaml"))
  .sort()
  .map((f) => join(chartDir, "ci", f));

export const SERVICES = ["gateway", "auth", "seckill-app", "seckill-core", "order", "admin"];

const INSTALL_HELM =
  "helm not found: `bash scripts/setup.sh` (run by npm test) installs it, or run `GOBIN=$PWD/.tools/bin go install helm.sh/helm/v3/cmd/helm@v3.22.0`";

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** .tools/bin/helm (what .ci/run installs), else helm on PATH; throws how to get it. */
export function helmBinary(): string {
  const local = join(repoRoot, ".tools", "bin", "helm");
  const found = existsSync(local) ? local : onPath("helm");
  if (!found) throw new Error(INSTALL_HELM);
  return found;
}

/** The command that builds a kustomization: kustomize (.tools/bin or PATH), else `kubectl kustomize`. */
export function kustomizeCommand(): [string, string[]] {
  const local = join(repoRoot, ".tools", "bin", "kustomize");
  const kustomize = existsSync(local) ? local : onPath("kustomize");
  if (kustomize) return [kustomize, ["build"]];
  const kubectl = onPath("kubectl");
  if (kubectl) return [kubectl, ["kustomize"]];
  throw new Error(
    "neither kustomize nor kubectl found: `bash scripts/setup.sh` (run by npm test) installs kustomize, or run `GOBIN=$PWD/.tools/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1`",
  );
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field
  [key: string]: any;
}

export function parseManifests(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors[0]!.message}`);
    const value = doc.toJS({ maxAliasCount: 100 }) as K8sObject | null;
    if (value) objects.push(value);
  }
  return objects;
}

export interface HelmResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

export async function helm(args: string[]): Promise<HelmResult> {
  try {
    const { stdout, stderr } = await run(helmBinary(), args, {
      cwd: repoRoot,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, HELM_CACHE_HOME: join(repoRoot, ".tmp", "helm", "cache") },
    });
    return { ok: true, stdout, stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    if (e.stdout === undefined) throw err;
    return { ok: false, stdout: e.stdout ?? "", stderr: e.stderr || e.message };
  }
}

/** helm template with these values files and --set pairs; throws with helm's message on failure. */
export async function renderChart(
  valuesFiles: string[] = [],
  set: string[] = [],
  release = "seckill",
): Promise<K8sObject[]> {
  const res = await templateChart(valuesFiles, set, release);
  if (!res.ok) throw new Error(`helm template failed: ${res.stderr}`);
  return parseManifests(res.stdout);
}

export function templateChart(valuesFiles: string[] = [], set: string[] = [], release = "seckill") {
  return helm([
    "template",
    release,
    chartDir,
    "--namespace",
    "shop",
    ...valuesFiles.flatMap((f) => ["-f", f]),
    ...set.flatMap((s) => ["--set", s]),
  ]);
}

export async function buildKustomization(dir: string): Promise<K8sObject[]> {
  const [command, args] = kustomizeCommand();
  const { stdout } = await run(command, [...args, dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseManifests(stdout);
}

// biome-ignore lint/suspicious/noExplicitAny: the models' constructors take any object
type ModelClass = new (data: any) => { validate(): void };

/** The kubernetes-models module of an apiVersion/kind, e.g. apps/v1 Deployment. */
function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

/** Kinds with no model package here (KEDA's CRDs): checked by hand, unknown fields included. */
const isKeda = (obj: K8sObject) => obj.apiVersion === "keda.sh/v1alpha1";

/** Fields of KEDA's ScaledObject and TriggerAuthentication that the chart may render. */
function kedaErrors(obj: K8sObject): string[] {
  const errors: string[] = [];
  const only = (what: string, o: unknown, allowed: string[], required: string[] = []) => {
    if (typeof o !== "object" || o === null || Array.isArray(o)) {
      errors.push(`${what} is not an object`);
      return;
    }
    for (const k of Object.keys(o))
      if (!allowed.includes(k)) errors.push(`${what}.${k} is unknown`);
    for (const k of required) if (!(k in o)) errors.push(`${what}.${k} is missing`);
  };
  only("", obj, ["apiVersion", "kind", "metadata", "spec"], ["metadata", "spec"]);
  only("metadata", obj.metadata, ["name", "namespace", "labels", "annotations"], ["name"]);
  const spec = obj.spec;
  const isInt = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  if (obj.kind === "ScaledObject") {
    only(
      "spec",
      spec,
      [
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "fallback",
        "advanced",
        "triggers",
      ],
      ["scaleTargetRef", "triggers"],
    );
    only(
      "spec.scaleTargetRef",
      spec?.scaleTargetRef,
      ["apiVersion", "kind", "name", "envSourceContainerName"],
      ["name"],
    );
    for (const k of ["minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"]) {
      if (k in (spec ?? {}) && !isInt(spec[k])) errors.push(`spec.${k} is not a count`);
    }
    if (!Array.isArray(spec?.triggers) || spec.triggers.length === 0)
      errors.push("spec.triggers is empty");
    (spec?.triggers ?? []).forEach((t: K8sObject["spec"], i: number) => {
      only(
        `spec.triggers[${i}]`,
        t,
        ["type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"],
        ["type", "metadata"],
      );
      for (const [k, v] of Object.entries(t?.metadata ?? {}))
        if (typeof v !== "string") errors.push(`spec.triggers[${i}].metadata.${k} is not a string`);
      if (t?.authenticationRef)
        only(
          `spec.triggers[${i}].authenticationRef`,
          t.authenticationRef,
          ["name", "kind"],
          ["name"],
        );
    });
  } else if (obj.kind === "TriggerAuthentication") {
    only("spec", spec, ["secretTargetRef", "env", "podIdentity"]);
    (spec?.secretTargetRef ?? []).forEach((r: unknown, i: number) => {
      const fields = ["parameter", "name", "key"];
      only(`spec.secretTargetRef[${i}]`, r, fields, fields);
    });
  } else {
    errors.push(`no check for ${obj.kind}`);
  }
  return errors;
}

/**
 * Validates one object against the OpenAPI schema of its kind; throws a readable error.
 * Unknown apiVersion/kind combinations throw too: a typo there is a bug.
 */
export async function validateObject(obj: K8sObject): Promise<void> {
  const where = `${obj.kind}/${obj.metadata?.name}`;
  if (isKeda(obj)) {
    const errors = kedaErrors(obj);
    if (errors.length > 0) throw new Error(`${where} (${obj.apiVersion}): ${errors.join("; ")}`);
    return;
  }
  let Model: ModelClass;
  try {
    const mod = (await import(modelModule(obj.apiVersion, obj.kind))) as Record<string, ModelClass>;
    Model = mod[obj.kind]!;
    if (!Model) throw new Error("no such export");
  } catch {
    throw new Error(`${where}: no schema for ${obj.apiVersion} ${obj.kind}`);
  }
  // kustomize folds long base64 values over lines; the API server ignores the line breaks
  // (Go's base64 decoder does), the validator's "byte" format does not.
  if (obj.kind === "Secret" && obj.data) {
    obj = {
      ...obj,
      data: Object.fromEntries(
        Object.entries(obj.data as Record<string, string>).map(([k, v]) => [
          k,
          v.replace(/\s+/g, ""),
        ]),
      ),
    };
  }
  try {
    new Model(obj).validate();
  } catch (err) {
    throw new Error(`${where} (${obj.apiVersion}): ${(err as Error).message}`);
  }
}

/** Every container of a workload-like object (Deployment, Job, Pod, StatefulSet). */
// biome-ignore lint/suspicious/noExplicitAny: see K8sObject
export function podSpec(obj: K8sObject): any {
  return obj.kind === "Pod" ? obj.spec : obj.spec?.template?.spec;
}

export function matches(selector: Record<string, string>, labels: Record<string, string> = {}) {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/**
 * Unknown fields: the schema validators accept any extra property (a misspelled
 * `readinessProbe.grpcc` would pass them), so every object is also written out as a typed
 * object literal and type-checked against the models' interfaces, where TypeScript's excess
 * property check rejects every field the Kubernetes API does not define. Returns the errors.
 */
export function unknownFields(objects: K8sObject[]): string[] {
  const dir = join(repoRoot, ".tmp", "kube-fields");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `objects-${process.pid}-${Date.now()}.ts`);
  const lines: string[] = [];
  const names: string[] = [];
  // KEDA's kinds have no model: validateObject rejects their unknown fields itself.
  objects
    .filter((obj) => !isKeda(obj))
    .forEach((obj, i) => {
      const type = `T${i}`;
      lines.push(
        `import type { I${obj.kind} as ${type} } from "${modelModule(obj.apiVersion, obj.kind)}";`,
      );
      lines.push(`export const o${i}: ${type} = ${JSON.stringify(obj)};`);
      names.push(`${obj.kind}/${obj.metadata?.name}`);
    });
  writeFileSync(file, `${lines.join("\n")}\n`);
  try {
    const program = ts.createProgram([file], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
    });
    const source = program.getSourceFile(file)!;
    return ts.getPreEmitDiagnostics(program, source).map((d) => {
      const line = d.start === undefined ? -1 : source.getLineAndCharacterOfPosition(d.start).line;
      const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
      return `${names[Math.floor(line / 2)] ?? "?"}: ${message}`;
    });
  } finally {
    rmSync(file, { force: true });
  }
}
