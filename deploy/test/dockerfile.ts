/** Reading the Dockerfile the way the checks need it. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./kube.ts";

export interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
export function dockerInstructions(
  text = readFileSync(join(repoRoot, "Dockerfile"), "utf8"),
): Instruction[] {
  return text
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const m = l.match(/^(\S+)\s*(.*)$/)!;
      return { op: m[1]!.toUpperCase(), args: m[2]! };
    });
}

/** The instructions of the stage named `name` (FROM … AS name), up to the next FROM. */
export function stage(steps: Instruction[], name: string): Instruction[] {
  const start = steps.findIndex((s) => s.op === "FROM" && s.args.endsWith(` AS ${name}`));
  if (start < 0) throw new Error(`no stage ${name}`);
  const next = steps.findIndex((s, i) => i > start && s.op === "FROM");
  return steps.slice(start, next < 0 ? undefined : next);
}

/** The npm command that installs the runtime's dependencies (stage prod-deps). */
export const PROD_INSTALL = "npm ci --omit=dev --ignore-scripts";
