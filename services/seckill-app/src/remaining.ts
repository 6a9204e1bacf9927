/**
 * Units left per activity for the activity page, read from seckill-core's
 * GetStock at most once per `ttlMs` per activity however many buyers look:
 * concurrent readers share one call, and a failed call keeps nothing (the
 * page then shows no count rather than a stale one).
 */
export class RemainingStock {
  private readonly cache = new Map<string, { value: Promise<bigint | undefined>; at: number }>();

  constructor(
    private readonly fetch: (activityId: string) => Promise<bigint>,
    private readonly ttlMs = 500,
    private readonly now: () => number = Date.now,
  ) {}

  get(activityId: string): Promise<bigint | undefined> {
    const hit = this.cache.get(activityId);
    if (hit && this.now() - hit.at < this.ttlMs) return hit.value;
    const value = this.fetch(activityId).catch(() => {
      this.cache.delete(activityId);
      return undefined;
    });
    this.cache.set(activityId, { value, at: this.now() });
    return value;
  }
}
