/**
 * The load generator's engine: buyers hit the gateway with GetBuyToken + Buy,
 * in a closed model (N buyers in flight at once) or an open model (arrivals at
 * a fixed rate; latency counted from the intended start so a stalled server
 * cannot hide its queueing — coordinated omission corrected). Bounded by count
 * and time; stops by itself.
 */
import { randomUUID } from "node:crypto";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { SeckillAppService } from "../../../gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../../../gen/seckill/common/v1/common_pb.ts";
import { sleep } from "../../../shared/src/runtime/time.ts";
import { LatencyHistogram } from "./histogram.ts";

export type LoadModel =
  | { kind: "closed"; concurrency: number }
  | { kind: "open"; rate: number; maxInFlight?: number };

export interface Buyer {
  /** The buyer's access token (Bearer). */
  token: string;
}

export interface LoadOptions {
  app: Client<typeof SeckillAppService>;
  activityId: string;
  buyers: readonly Buyer[];
  model: LoadModel;
  /** Upper bounds: whichever comes first ends the run. */
  maxAttempts: number;
  maxDurationMs: number;
  /** Each buyer tries once (a flash sale); with `repeat`, buyers are reused round-robin. */
  repeat?: boolean;
  /** Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) retried with the same request id. */
  retries?: number;
  /**
   * A buyer told "too many requests" (RESOURCE_EXHAUSTED, RATE_LIMITED, OVERLOADED)
   * comes back after the hinted delay, at most this many times (default 3).
   */
  comebacks?: number;
  /** Per-RPC timeout. */
  timeoutMs?: number;
  onTick?: (snapshot: LoadSnapshot) => void;
}

export interface SecondBucket {
  second: number;
  completed: number;
  reserved: number;
  latency: LatencyHistogram;
}

export interface LoadSnapshot {
  elapsedMs: number;
  attempts: number;
  completed: number;
  reserved: number;
  inFlight: number;
}

export interface LoadResult {
  model: LoadModel;
  startedAt: string;
  durationMs: number;
  attempts: number;
  completed: number;
  /** Outcomes by name: BuyResult names (RESERVED, SOLD_OUT, …) or gRPC codes of errors. */
  outcomes: Record<string, number>;
  retried: number;
  /** Buyers that were shed and came back (each counted once per comeback). */
  comebacks: number;
  latency: LatencyHistogram;
  timeline: SecondBucket[];
  orderIds: string[];
}

const transient = new Set([Code.Unavailable, Code.DeadlineExceeded]);
const shedResults = new Set<BuyResult>([BuyResult.RATE_LIMITED, BuyResult.OVERLOADED]);
const comebackDelayMs = (hintMs: number) =>
  Math.max(50, Math.min(hintMs || 200, 2000)) * (0.5 + Math.random());

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const startedAt = Date.now();
  const deadline = startedAt + opts.maxDurationMs;
  const latency = new LatencyHistogram();
  const outcomes: Record<string, number> = {};
  const timeline: SecondBucket[] = [];
  const orderIds: string[] = [];
  let attempts = 0;
  let completed = 0;
  let reserved = 0;
  let retried = 0;
  let comebacks = 0;
  let inFlight = 0;
  let nextBuyer = 0;
  const retries = opts.retries ?? 2;
  const callOptions = (buyer: Buyer) => ({
    headers: { authorization: `Bearer ${buyer.token}` },
    timeoutMs: opts.timeoutMs ?? 10_000,
  });

  const takeBuyer = (): Buyer | undefined => {
    if (attempts >= opts.maxAttempts || Date.now() >= deadline) return undefined;
    if (!opts.repeat && nextBuyer >= opts.buyers.length) return undefined;
    const buyer = opts.buyers[nextBuyer++ % opts.buyers.length];
    attempts++;
    return buyer;
  };

  const bucket = (at: number): SecondBucket => {
    const second = Math.floor((at - startedAt) / 1000);
    while (timeline.length <= second) {
      timeline.push({
        second: timeline.length,
        completed: 0,
        reserved: 0,
        latency: new LatencyHistogram(),
      });
    }
    return timeline[second]!;
  };

  const record = (outcome: string, intendedStart: number) => {
    const now = Date.now();
    const ms = now - intendedStart;
    latency.record(ms);
    const b = bucket(now);
    b.completed++;
    b.latency.record(ms);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    completed++;
    if (outcome === "RESERVED") {
      reserved++;
      b.reserved++;
    }
  };

  /**
   * One buyer's attempt: a token, then the buy. Transient failures are retried at
   * once with the same request id (the answer may have been lost); a buyer who is
   * shed comes back after the hinted delay with a new token, like a person would.
   */
  const attempt = async (buyer: Buyer, intendedStart: number) => {
    inFlight++;
    const requestId = randomUUID();
    let outcome = "UNKNOWN";
    let transientLeft = retries;
    let comebacksLeft = opts.comebacks ?? 3;
    const comeBack = async (hintMs: number) => {
      if (comebacksLeft-- <= 0 || Date.now() >= deadline) return false;
      comebacks++;
      await sleep(comebackDelayMs(hintMs));
      return true;
    };
    try {
      for (;;) {
        try {
          const { buyToken } = await opts.app.getBuyToken(
            { activityId: opts.activityId },
            callOptions(buyer),
          );
          const res = await opts.app.buy(
            { activityId: opts.activityId, quantity: 1, buyToken, requestId },
            callOptions(buyer),
          );
          outcome = BuyResult[res.result] ?? String(res.result);
          if (shedResults.has(res.result) && (await comeBack(res.retryAfterMs))) continue;
          if (res.result === BuyResult.RESERVED) orderIds.push(res.orderId);
          break;
        } catch (err) {
          const e = ConnectError.from(err);
          outcome = Code[e.code] ?? String(e.code);
          if (transient.has(e.code) && transientLeft-- > 0 && Date.now() < deadline) {
            retried++;
            continue;
          }
          if (e.code === Code.ResourceExhausted && (await comeBack(0))) continue;
          break;
        }
      }
    } finally {
      inFlight--;
      record(outcome, intendedStart);
    }
  };

  const ticker = setInterval(
    () =>
      opts.onTick?.({ elapsedMs: Date.now() - startedAt, attempts, completed, reserved, inFlight }),
    250,
  );
  try {
    if (opts.model.kind === "closed") {
      const worker = async () => {
        for (let buyer = takeBuyer(); buyer; buyer = takeBuyer()) await attempt(buyer, Date.now());
      };
      await Promise.all(Array.from({ length: opts.model.concurrency }, worker));
    } else {
      const { rate } = opts.model;
      const maxInFlight = opts.model.maxInFlight ?? 10_000;
      const pending = new Set<Promise<void>>();
      const intervalMs = 1000 / rate;
      for (let i = 0; ; i++) {
        const intended = startedAt + i * intervalMs;
        const wait = intended - Date.now();
        if (wait > 1) await sleep(wait);
        if (inFlight >= maxInFlight) {
          // The client itself is saturated: count it, the run is not measuring the server any more.
          outcomes.CLIENT_SATURATED = (outcomes.CLIENT_SATURATED ?? 0) + 1;
          attempts++;
          if (attempts >= opts.maxAttempts || Date.now() >= deadline) break;
          continue;
        }
        const buyer = takeBuyer();
        if (!buyer) break;
        const p = attempt(buyer, intended).finally(() => pending.delete(p));
        pending.add(p);
      }
      await Promise.all(pending);
    }
  } finally {
    clearInterval(ticker);
  }
  opts.onTick?.({ elapsedMs: Date.now() - startedAt, attempts, completed, reserved, inFlight });
  return {
    model: opts.model,
    startedAt: new Date(startedAt).toISOString(),
    durationMs: Date.now() - startedAt,
    attempts,
    completed,
    outcomes,
    retried,
    comebacks,
    latency,
    timeline,
    orderIds,
  };
}
