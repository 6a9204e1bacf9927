import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));

export interface ServicePlan {
  name: string;
  /** main.ts relative to the repository root. */
  entry: string;
  instances: number;
}

/** The mesh as `seckill up` starts it: two instances of the hot services, one of the rest. */
export function defaultPlan(overrides: Partial<Record<string, number>> = {}): ServicePlan[] {
  const plan: ServicePlan[] = [
    { name: "auth", entry: "services/auth/src/main.ts", instances: 1 },
    { name: "admin", entry: "services/admin/src/main.ts", instances: 1 },
    { name: "seckill-core", entry: "services/seckill-core/src/main.ts", instances: 2 },
    { name: "order", entry: "services/order/src/main.ts", instances: 1 },
    { name: "seckill-app", entry: "services/seckill-app/src/main.ts", instances: 2 },
    { name: "gateway", entry: "services/gateway/src/main.ts", instances: 1 },
  ];
  return plan.map((p) => ({ ...p, instances: overrides[p.name] ?? p.instances }));
}

export const isBuilt = (plan: ServicePlan) => existsSync(`${repoRoot}${plan.entry}`);
