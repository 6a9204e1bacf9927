import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SmoothWeightedRoundRobin } from "./swrr.ts";

const peers = (weights: Record<string, number>) =>
  Object.entries(weights).map(([key, weight]) => ({ key, weight, value: key }));

const take = (rr: SmoothWeightedRoundRobin<string>, n: number, eligible?: (v: string) => boolean) =>
  Array.from({ length: n }, () => rr.pick(eligible));

describe("SmoothWeightedRoundRobin", () => {
  it("gives nginx's sequence a a b a c a a for weights 5,1,1, every cycle", () => {
    const rr = new SmoothWeightedRoundRobin(peers({ a: 5, b: 1, c: 1 }));
    const expected = ["a", "a", "b", "a", "c", "a", "a"];
    for (let cycle = 0; cycle < 3; cycle++) assert.deepEqual(take(rr, 7), expected);
  });

  it("splits traffic exactly in proportion to the weights", () => {
    const rr = new SmoothWeightedRoundRobin(peers({ a: 3, b: 2, c: 1 }));
    const counts = new Map<string, number>();
    for (const key of take(rr, 600)) counts.set(key!, (counts.get(key!) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries(counts), { a: 300, b: 200, c: 100 });
  });

  it("follows weight updates and drops removed peers", () => {
    const rr = new SmoothWeightedRoundRobin(peers({ a: 1, b: 1 }));
    assert.deepEqual(take(rr, 4).sort(), ["a", "a", "b", "b"]);
    rr.update(peers({ a: 1, c: 3 }));
    const next = take(rr, 8);
    assert.equal(next.filter((k) => k === "c").length, 6);
    assert.equal(next.filter((k) => k === "a").length, 2);
    assert.ok(!next.includes("b"));
  });

  it("gives no traffic to an ineligible peer and returns undefined when none is eligible", () => {
    const rr = new SmoothWeightedRoundRobin(peers({ a: 5, b: 1, c: 1 }));
    const open = new Set(["a"]);
    const picks = take(rr, 20, (k) => !open.has(k));
    assert.ok(!picks.includes("a"));
    assert.equal(picks.filter((k) => k === "b").length, 10);
    assert.equal(
      rr.pick(() => false),
      undefined,
    );
  });

  it("ignores peers with weight 0", () => {
    const rr = new SmoothWeightedRoundRobin(peers({ a: 0, b: 2 }));
    assert.deepEqual(take(rr, 3), ["b", "b", "b"]);
    assert.equal(rr.size, 1);
  });
});
