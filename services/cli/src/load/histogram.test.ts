import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LatencyHistogram } from "./histogram.ts";

describe("LatencyHistogram", () => {
  it("gives percentiles within 1 % of the exact ones", () => {
    const h = new LatencyHistogram();
    const values = Array.from({ length: 10_000 }, (_, i) => 0.05 + i * 0.37);
    for (const v of values) h.record(v);
    const exact = (p: number) => values[Math.ceil((p / 100) * values.length) - 1]!;
    for (const p of [50, 90, 99, 99.9]) {
      const got = h.percentile(p);
      assert.ok(Math.abs(got - exact(p)) / exact(p) <= 0.011, `p${p}: ${got} vs ${exact(p)}`);
    }
    assert.equal(h.percentile(100), values.at(-1));
    assert.equal(h.count, values.length);
  });

  it("merges histograms as if all values were recorded in one", () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const all = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) {
      (i % 2 ? a : b).record(i);
      all.record(i);
    }
    a.merge(b);
    assert.deepEqual(a.summary(), all.summary());
  });

  it("answers zeros when empty", () => {
    assert.deepEqual(new LatencyHistogram().summary(), {
      count: 0,
      p50: 0,
      p90: 0,
      p99: 0,
      p999: 0,
      max: 0,
      mean: 0,
    });
  });
});
