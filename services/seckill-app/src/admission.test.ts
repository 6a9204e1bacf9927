import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AdmissionGate } from "./admission.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("admission gate", () => {
  it("admits up to maxInflight at once, synchronously", () => {
    const gate = new AdmissionGate({ name: "t1", maxInflight: 2, maxQueue: 0, maxWaitMs: 50 });
    assert.equal(gate.enter(), true);
    assert.equal(gate.enter(), true);
    assert.equal(gate.enter(), false, "no queue: shed at once");
    gate.release();
    assert.equal(gate.enter(), true);
    assert.equal(gate.inflight, 2);
    gate.close();
  });

  it("hands a freed slot to the oldest waiter and sheds the rest after maxWaitMs", async () => {
    const gate = new AdmissionGate({ name: "t2", maxInflight: 1, maxQueue: 2, maxWaitMs: 40 });
    assert.equal(gate.enter(), true);
    const first = gate.enter() as Promise<boolean>;
    const second = gate.enter() as Promise<boolean>;
    assert.equal(gate.enter(), false, "queue full: shed at once");
    assert.equal(gate.queued, 2);
    gate.release();
    assert.equal(await first, true);
    assert.equal(gate.inflight, 1, "the slot passed on");
    assert.equal(await second, false, "timed out");
    assert.equal(gate.queued, 0);
    gate.release();
    assert.equal(gate.inflight, 0);
    gate.close();
  });

  it("keeps its counts right under churn", async () => {
    const gate = new AdmissionGate({ name: "t3", maxInflight: 4, maxQueue: 8, maxWaitMs: 5 });
    let admitted = 0;
    let shed = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        await sleep(i % 7);
        let ok = gate.enter();
        if (ok !== true && ok !== false) ok = await ok;
        if (!ok) {
          shed++;
          return;
        }
        admitted++;
        peak = Math.max(peak, gate.inflight);
        await sleep(1 + (i % 3));
        gate.release();
      }),
    );
    assert.equal(admitted + shed, 300);
    assert.ok(peak <= 4, `peak ${peak}`);
    assert.equal(gate.inflight, 0);
    assert.equal(gate.queued, 0);
    console.log(`admission churn: ${admitted} admitted, ${shed} shed, peak in flight ${peak}`);
    gate.close();
  });
});
