import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Activity, ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import { activityFixture } from "../../shared/src/testing/fixtures.ts";
import { ActivityView } from "./activity-view.ts";

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const MIN = 60_000;

function view(flagTtlMs = 1000) {
  let now = T0;
  const flags = new SoldOutFlags(flagTtlMs, () => now);
  const v = new ActivityView(flags);
  const apply = (...activities: Activity[]) => v.apply(new Map(activities.map((a) => [a.id, a])));
  return { v, flags, apply, setNow: (ms: number) => (now = ms) };
}

const status = (a: Activity | undefined) => (a ? ActivityStatus[a.status] : "missing");

describe("activity view", () => {
  it("derives statuses from the window, the clock and the flags, and orders by start", () => {
    const { v, flags, apply } = view();
    apply(
      activityFixture({ id: "later", startMs: T0 + 10 * MIN, endMs: T0 + 20 * MIN }),
      activityFixture({ id: "live", startMs: T0 - MIN, endMs: T0 + MIN }),
      activityFixture({ id: "over", startMs: T0 - 20 * MIN, endMs: T0 - 10 * MIN }),
      activityFixture({
        id: "early",
        startMs: T0 - 2 * MIN,
        endMs: T0 + MIN,
        status: ActivityStatus.ENDED,
      }),
      activityFixture({ id: "draft", status: ActivityStatus.DRAFT }),
    );
    assert.deepEqual(
      v.list(T0).map((a) => `${a.id}:${status(a)}`),
      ["over:ENDED", "early:ENDED", "live:LIVE", "later:PUBLISHED"],
    );
    assert.equal(v.get("draft", T0), undefined, "drafts are not published");
    flags.mark("live", T0);
    assert.equal(status(v.get("live", T0)), "SOLD_OUT");
    // The stored message is never changed.
    assert.equal(status(v.entry("live")?.activity), "PUBLISHED");
  });

  it("moves across window boundaries and flag expiry without any change event", () => {
    const { v, flags, apply, setNow } = view(1000);
    apply(activityFixture({ id: "a", startMs: T0 + 1000, endMs: T0 + 5000 }));
    assert.equal(status(v.get("a", T0)), "PUBLISHED");
    assert.equal(status(v.get("a", T0 + 999)), "PUBLISHED");
    assert.equal(status(v.get("a", T0 + 1000)), "LIVE", "start is inclusive");
    setNow(T0 + 2000);
    flags.mark("a");
    assert.equal(status(v.get("a", T0 + 2000)), "SOLD_OUT");
    assert.equal(status(v.get("a", T0 + 2999)), "SOLD_OUT");
    assert.equal(status(v.get("a", T0 + 3000)), "LIVE", "the flag expired");
    assert.equal(status(v.get("a", T0 + 5000)), "ENDED", "end is exclusive");
  });

  it("ignores an older revision than the one it holds", () => {
    const { v, apply } = view();
    apply(activityFixture({ id: "a", perUserLimit: 3, revision: 5 }));
    apply(activityFixture({ id: "a", perUserLimit: 1, revision: 4 }));
    assert.equal(v.entry("a")?.activity.perUserLimit, 3);
    apply(activityFixture({ id: "a", perUserLimit: 2, revision: 6 }));
    assert.equal(v.entry("a")?.activity.perUserLimit, 2);
    apply();
    assert.equal(v.entry("a"), undefined, "removed from etcd: gone");
  });

  it("prints what the cache saves per ListActivities (50 activities)", () => {
    const { v, apply, flags } = view();
    apply(
      ...Array.from({ length: 50 }, (_, i) =>
        activityFixture({ id: `act-${i}`, startMs: T0 - MIN + i * 1000, endMs: T0 + 60 * MIN }),
      ),
    );
    const n = 20_000;
    let t0 = performance.now();
    for (let i = 0; i < n; i++) v.list(T0 + (i % 1000));
    const cachedUs = ((performance.now() - t0) * 1000) / n;
    t0 = performance.now();
    for (let i = 0; i < n; i++) {
      flags.version++; // forces a recompute each time
      v.list(T0 + (i % 1000));
    }
    const recomputeUs = ((performance.now() - t0) * 1000) / n;
    console.log(
      `ListActivities view, 50 activities: cached ${cachedUs.toFixed(2)} µs, recomputed ${recomputeUs.toFixed(2)} µs`,
    );
  });
});
