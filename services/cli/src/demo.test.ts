import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { type LocalStack, startLocalStack } from "../../shared/src/stack/local-stack.ts";
import { defaultPlan, repoRoot } from "../../shared/src/stack/plan.ts";
import { pollUntil } from "../../shared/src/testing/poll.ts";
import { checks } from "./load/report.ts";
import { runSale } from "./load/sale.ts";

/** `npm run demo` in small: the whole mesh on real servers, a sale through the gateway, the books checked. */
describe("the demo, smaller", () => {
  let stack: LocalStack;
  before(async () => {
    stack = await startLocalStack({
      plan: defaultPlan(),
      stateDir: `${process.cwd()}/.seckill/test-demo`,
      observe: true,
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it("sells exactly the stock to 2,000 buyers, every success becomes one order, the books reconcile", async () => {
    const gateway = stack.instances.find((i) => i.service === "gateway");
    assert.ok(gateway, "the gateway runs");
    const report = await runSale({
      target: `http://127.0.0.1:${gateway.port}`,
      adminUsername: stack.env.ADMIN_USERNAME!,
      adminPassword: stack.env.ADMIN_PASSWORD!,
      stock: 200,
      buyers: 2000,
      model: { kind: "closed", concurrency: 64 },
      maxDurationMs: 90_000,
    });
    console.log(
      JSON.stringify({
        outcomes: report.load.outcomes,
        latency: report.load.latency.summary(),
        drainMs: report.drainMs,
      }),
    );
    for (const c of checks(report)) assert.ok(c.ok, `${c.check}: ${c.value}`);
    assert.equal(report.successes, 200);
    assert.equal(report.load.completed, 2000);
    assert.equal(new Set(report.load.orderIds).size, 200, "200 distinct order ids");
  });

  it("observes: Prometheus scrapes every service from the etcd registry and loads the alert rules", async () => {
    const prometheus = stack.prometheus;
    assert.ok(prometheus, "observe: true starts Prometheus");
    const api = async <T>(path: string): Promise<T> => {
      const response = await fetch(`${prometheus.url}${path}`, {
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(response.status, 200, path);
      return ((await response.json()) as { data: T }).data;
    };
    const services = ["gateway", "auth", "seckill-app", "seckill-core", "order", "admin"];
    const instanceIds = stack.instances.map((i) => i.instanceId).sort();
    const lag = encodeURIComponent(
      "count by (job) (seckill_process_nodejs_eventloop_lag_p99_seconds)",
    );
    const up = encodeURIComponent("up == 1");
    let jobs: string[] = [];
    let upInstances: string[] = [];
    await pollUntil(
      async () => {
        type Result = { result: { metric: Record<string, string> }[] };
        jobs = (await api<Result>(`/api/v1/query?query=${lag}`)).result.map((r) => r.metric.job!);
        // Every instance the stack started is a target that is up, labelled with its instance id.
        upInstances = (await api<Result>(`/api/v1/query?query=${up}`)).result
          .map((r) => r.metric.instance!)
          .sort();
        return services.every((s) => jobs.includes(s)) && upInstances.join() === instanceIds.join();
      },
      {
        timeoutMs: 20_000,
        intervalMs: 250,
        message: "a sample of every service and every instance up",
      },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; jobs: ${jobs.join()}; up: ${upInstances.join()}`);
    });
    const rules = await api<{ groups: { rules: { type: string; name: string }[] }[] }>(
      "/api/v1/rules",
    );
    const alerts = rules.groups.flatMap((g) => g.rules.filter((r) => r.type === "alerting"));
    assert.ok(alerts.length > 0, "the alert rules of deploy/monitoring/rules.yaml are loaded");
    const expected = [
      ...readFileSync(join(repoRoot, "deploy/monitoring/rules.yaml"), "utf8").matchAll(
        /^\s*- alert: (\S+)/gm,
      ),
    ].map((m) => m[1]);
    assert.deepEqual([...new Set(alerts.map((a) => a.name))].sort(), [...new Set(expected)].sort());
  });

  it("fails when its time cap stops the rush before every buyer is served", async () => {
    const gateway = stack.instances.find((i) => i.service === "gateway")!;
    const report = await runSale({
      target: `http://127.0.0.1:${gateway.port}`,
      adminUsername: stack.env.ADMIN_USERNAME!,
      adminPassword: stack.env.ADMIN_PASSWORD!,
      stock: 50,
      buyers: 2000,
      model: { kind: "closed", concurrency: 4 },
      maxDurationMs: 200,
    });
    assert.ok(report.load.completed < 2000, `${report.load.completed} buyers served in 200 ms`);
    const served = checks(report).find((c) => c.check === "buyers served == buyers");
    assert.ok(served, "the report checks that every buyer was served");
    assert.equal(served.ok, false);
    assert.equal(served.value, `${report.load.completed} / 2000`);
  });

  it("answers grpcurl through reflection alone: public methods at the gateway, internal ones at seckill-core", async () => {
    const grpcurl = join(repoRoot, ".tools", "bin", "grpcurl");
    assert.ok(
      existsSync(grpcurl),
      "grpcurl missing: run `bash scripts/setup.sh` (npm test runs it)",
    );
    const run = async (...args: string[]) =>
      (await promisify(execFile)(grpcurl, ["-plaintext", "-max-time", "10", ...args])).stdout;
    const gateway = stack.instances.find((i) => i.service === "gateway")!;
    const core = stack.instances.find((i) => i.service === "seckill-core")!;
    const edge = `127.0.0.1:${gateway.port}`;
    const internal = `127.0.0.1:${core.port}`;

    const listed = (await run(edge, "list")).split("\n");
    for (const s of ["seckill.app.v1.SeckillAppService", "seckill.gateway.v1.GatewayService"])
      assert.ok(listed.includes(s), `${s} listed at the gateway: ${listed.join(", ")}`);
    assert.ok(!listed.includes("seckill.core.v1.SeckillCoreService"), "core is not public");
    // A message whose fields come from another file (common.v1.Activity): the case that failed.
    assert.match(
      await run(edge, "describe", "seckill.app.v1.ListActivitiesResponse"),
      /repeated \.seckill\.common\.v1\.Activity activities = 1;/,
    );
    const { activities } = JSON.parse(
      await run("-d", "{}", edge, "seckill.app.v1.SeckillAppService/ListActivities"),
    ) as { activities: { id: string }[] };
    assert.ok(activities.length > 0, "the sales of this file are listed");

    assert.match(
      await run(internal, "describe", "seckill.core.v1.SeckillCoreService.GetStock"),
      /rpc GetStock \( \.seckill\.core\.v1\.GetStockRequest \)/,
    );
    const stock = JSON.parse(
      await run(
        "-d",
        JSON.stringify({ activityId: activities[0]!.id }),
        internal,
        "seckill.core.v1.SeckillCoreService/GetStock",
      ),
    ) as Record<string, string>;
    assert.ok(Number(stock.total) > 0, JSON.stringify(stock));
  });
});
