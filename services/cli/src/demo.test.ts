import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { checks } from "./load/report.ts";
import { runSale } from "./load/sale.ts";
import { type LocalStack, startLocalStack } from "./local-stack.ts";
import { defaultPlan } from "./plan.ts";

/** `npm run demo` in small: the whole mesh on real servers, a sale through the gateway, the books checked. */
describe("the demo, smaller", () => {
  let stack: LocalStack;
  before(async () => {
    stack = await startLocalStack({
      plan: defaultPlan(),
      stateDir: `${process.cwd()}/.seckill/test-demo`,
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
});
