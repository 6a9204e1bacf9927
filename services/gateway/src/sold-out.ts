/**
 * The sold-out short-circuit: once an upstream Buy answer says an activity is
 * sold out, later Buys for it are answered SOLD_OUT at the edge, until core's
 * restock message (`{act:<id>}:restock`, published when stock comes back) or a
 * short TTL clears the flag.
 *
 * A retry must still get its original answer: a buyer whose first attempt
 * reserved the last unit but whose answer was lost retries with the same
 * request id, and SOLD_OUT would be a lie. So request ids this instance
 * forwarded recently pass the flag (a retry through another gateway instance
 * is not recognised; see the README).
 */
import { create } from "@bufbuild/protobuf";
import {
  type BuyRequest,
  type BuyRequestSchema,
  type BuyResponse,
  type BuyResponseSchema as BuyResponseDesc,
  BuyResponseSchema,
} from "../../gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import type { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import type { UnaryHooks } from "./forwarder.ts";
import { soldOutRetriesPassed, soldOutShortCircuits } from "./metrics.ts";

/**
 * Keys seen within `ttlMs`, at most `max` of them (the oldest go first).
 * A Map keeps insertion order, so eviction is from the front.
 */
export class RecentKeys {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  add(key: string): void {
    this.seen.delete(key);
    this.seen.set(key, this.now() + this.ttlMs);
    while (this.seen.size > this.max) {
      const oldest = this.seen.keys().next().value as string;
      this.seen.delete(oldest);
    }
  }

  has(key: string): boolean {
    const until = this.seen.get(key);
    if (until === undefined) return false;
    if (this.now() < until) return true;
    this.seen.delete(key);
    return false;
  }

  get size(): number {
    return this.seen.size;
  }
}

const requestKey = (req: BuyRequest) => `${req.activityId}\u0000${req.requestId}`;

/** The forwarder hooks of SeckillAppService.Buy. */
export function buyHooks(
  flags: SoldOutFlags,
  recent: RecentKeys,
): UnaryHooks<typeof BuyRequestSchema, typeof BuyResponseDesc> {
  return {
    shortCircuit(req) {
      if (!req.activityId || !flags.has(req.activityId)) {
        if (req.requestId) recent.add(requestKey(req));
        return undefined;
      }
      if (req.requestId && recent.has(requestKey(req))) {
        soldOutRetriesPassed.inc();
        return undefined;
      }
      soldOutShortCircuits.inc();
      return create(BuyResponseSchema, {
        result: BuyResult.SOLD_OUT,
        soldOut: true,
        message: "sold out (answered by the gateway)",
      });
    },
    observe(req, res: BuyResponse) {
      if (res.soldOut || res.result === BuyResult.SOLD_OUT) flags.mark(req.activityId);
    },
  };
}
