import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createBatcher } from "./batcher.ts";

describe("createBatcher", () => {
  it("coalesces concurrent calls into batches of at most maxSize, each caller getting its own result", async () => {
    const batches: number[][] = [];
    const double = createBatcher<number, number>({
      name: "test-double",
      maxSize: 4,
      maxDelayMs: 5,
      run: async (items) => {
        batches.push(items);
        return items.map((x) => x * 2);
      },
    });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => double(i)));
    assert.deepEqual(
      results,
      Array.from({ length: 10 }, (_, i) => i * 2),
    );
    assert.deepEqual(
      batches.map((b) => b.length),
      [4, 4, 2],
    );
  });

  it("flushes a lone call after maxDelayMs", async () => {
    let runs = 0;
    const one = createBatcher<string, string>({
      name: "test-lone",
      maxSize: 100,
      maxDelayMs: 1,
      run: async (items) => {
        runs++;
        return items;
      },
    });
    assert.equal(await one("a"), "a");
    assert.equal(await one("b"), "b");
    assert.equal(runs, 2);
  });

  it("rejects every caller of a failed batch, and of a batch answered with the wrong count", async () => {
    const failing = createBatcher<number, number>({
      name: "test-fail",
      maxSize: 2,
      maxDelayMs: 1,
      run: async () => {
        throw new Error("boom");
      },
    });
    const outcomes = await Promise.allSettled([failing(1), failing(2)]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ["rejected", "rejected"],
    );
    const short = createBatcher<number, number>({
      name: "test-short",
      maxSize: 2,
      maxDelayMs: 1,
      run: async () => [1],
    });
    await assert.rejects(Promise.all([short(1), short(2)]), /answered 1 results/);
  });
});

describe("createBatcher and the callers' context", () => {
  it("runs a batch without the flushing caller's deadline, under the first caller's trace", async () => {
    const { runWithDeadline, currentDeadline } = await import("../transport/deadline.ts");
    const { context, trace, ROOT_CONTEXT } = await import("@opentelemetry/api");
    const { startTelemetry } = await import("../runtime/telemetry.ts");
    const telemetry = startTelemetry({
      service: "test",
      instance: "test",
      version: "test",
      exporter: "none",
    });
    const seen: { deadline: number | undefined; traceId: string | undefined }[] = [];
    const probe = createBatcher<number, number>({
      name: "test-context",
      maxSize: 2,
      maxDelayMs: 50,
      run: async (items) => {
        seen.push({
          deadline: currentDeadline(),
          traceId: trace.getSpanContext(context.active())?.traceId,
        });
        return items;
      },
    });
    const parent = trace.wrapSpanContext({
      traceId: "a".repeat(32),
      spanId: "b".repeat(16),
      traceFlags: 1,
    });
    await Promise.all([
      context.with(trace.setSpan(ROOT_CONTEXT, parent), () =>
        runWithDeadline(Date.now() + 5, () => probe(1)),
      ),
      runWithDeadline(Date.now() + 60_000, () => probe(2)),
    ]);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.deadline, undefined, "no caller's deadline leaks into the batch");
    assert.equal(seen[0]!.traceId, "a".repeat(32), "the batch continues the first caller's trace");
    await telemetry.shutdown();
  });
});
