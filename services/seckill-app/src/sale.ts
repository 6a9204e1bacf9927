/**
 * The buyer-facing sale logic: buy tokens and Buy. Handlers (routes.ts) only
 * establish the caller; everything else is here.
 *
 * Buy, cheapest refusal first:
 *   1. input (INVALID_ARGUMENT), activity in the snapshot (NOT_FOUND),
 *      quantity within the per-user limit (INVALID_ARGUMENT);
 *   2. local, no I/O: blacklist (BLACKLISTED), window (NOT_STARTED / ENDED),
 *      sold-out flag (SOLD_OUT), token MAC / binding / expiry (TOKEN_INVALID);
 *   3. admission gate (OVERLOADED);
 *   4. one Redis script: per-user rate limit (RATE_LIMITED), then the token's
 *      single-use claim (TOKEN_INVALID when another request id holds it);
 *   5. core Reserve, micro-batched; sold_out in its answer raises the local flag.
 *
 * Retries. A retry carries the same request_id and token; its token is already
 * claimed by that request id, and that is accepted (step 4). A retry may also
 * meet a local refusal that its first attempt did not (the flag went up, the
 * window closed, the token expired): then, when the token itself is genuine,
 * step 4 runs in "look only" mode and, if the claim is this request id's, core
 * is asked, and core answers the original reservation (it checks request ids
 * first). Otherwise the local refusal stands, so fresh buyers of a sold-out
 * activity still never reach core.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import {
  type BuyRequest,
  type BuyResponse,
  BuyResponseSchema,
  type GetBuyTokenResponseSchema,
} from "../../gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Reserver } from "../../seckill-core/src/client.ts";
import { idProblem } from "../../shared/src/data-plane/ids.ts";
import {
  type RedisErrorMapper,
  redisErrorMapper,
  withRedisErrors,
} from "../../shared/src/data-plane/redis-errors.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { BlacklistKind } from "../../shared/src/sale/blacklist.ts";
import type { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";
import type { Caller } from "../../shared/src/transport/identity.ts";
import type { ActivityView, SaleEntry } from "./activity-view.ts";
import { phaseOf } from "./activity-view.ts";
import type { AdmissionGate } from "./admission.ts";
import type { BuyTokens } from "./buy-token.ts";
import type { SaleLimits } from "./limits.ts";
import { countResult, shedBuy, shedToken, stage, tokenOutcomes } from "./metrics.ts";

export interface SaleDeps {
  view: ActivityView;
  flags: SoldOutFlags;
  blacklist: {
    isBlocked(kind: BlacklistKind, member: string | undefined, nowMs?: number): boolean;
  };
  tokens: BuyTokens;
  limits: SaleLimits;
  buyGate: AdmissionGate;
  tokenGate: AdmissionGate;
  reserve: Reserver;
  /** How long after expiry a token still serves a retry of the request that claimed it. */
  retryGraceMs: number;
  /** Base of retry_after_ms for a shed Buy (plus up to 100 % jitter). */
  overloadRetryAfterMs: number;
  log: Logger;
}

type BuyAnswer = MessageInitShape<typeof BuyResponseSchema>;
type TokenAnswer = MessageInitShape<typeof GetBuyTokenResponseSchema>;

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

/** Answers that never vary are built once. */
const frozen = (result: BuyResult, message: string, soldOut = false): BuyResponse =>
  Object.freeze(create(BuyResponseSchema, { result, message, soldOut }));
const SOLD_OUT = frozen(BuyResult.SOLD_OUT, "sold out", true);
const BLACKLISTED = frozen(BuyResult.BLACKLISTED, "this account or address may not buy");
const ENDED = frozen(BuyResult.ENDED, "the sale has ended");
const TOKEN_MESSAGES = {
  missing: "buy token missing: get one with GetBuyToken",
  malformed: "buy token malformed",
  invalid: "buy token not valid for this user and activity",
  expired: "buy token expired: get a new one",
  reused: "buy token already used by another request",
} as const;
const TOKEN_INVALID = Object.fromEntries(
  Object.entries(TOKEN_MESSAGES).map(([k, m]) => [k, frozen(BuyResult.TOKEN_INVALID, m)]),
) as Record<keyof typeof TOKEN_MESSAGES, BuyResponse>;

const iso = (ms: number) => new Date(ms).toISOString();

export class Sale {
  private readonly redisFailure: RedisErrorMapper;

  constructor(private readonly d: SaleDeps) {
    this.redisFailure = redisErrorMapper({ store: "sale state", log: d.log });
  }

  // -------------------------------------------------------------------------
  // GetBuyToken

  /**
   * A token for (caller, activity): NOT_FOUND for an unknown activity,
   * PERMISSION_DENIED when the user or IP is blacklisted, FAILED_PRECONDITION
   * outside the window, RESOURCE_EXHAUSTED over the per-user token rate or when
   * shed. A sold-out flag does not refuse a token: stock may come back.
   */
  async issueToken(activityId: string, caller: Caller): Promise<TokenAnswer> {
    const entry = this.activity(activityId);
    requireId("the caller's user id", caller.userId);
    const now = Date.now();
    if (this.blacklisted(caller, now)) {
      tokenOutcomes.inc({ outcome: "blacklisted" });
      throw new ConnectError("this account or address may not buy", Code.PermissionDenied);
    }
    const phase = phaseOf(entry, now);
    if (phase !== "LIVE") {
      tokenOutcomes.inc({ outcome: phase === "ENDED" ? "ended" : "not_started" });
      throw new ConnectError(
        phase === "ENDED"
          ? `the sale of ${activityId} has ended`
          : `the sale of ${activityId} opens at ${iso(entry.startMs)}`,
        Code.FailedPrecondition,
      );
    }

    const gate = this.d.tokenGate;
    let admitted = gate.enter();
    if (admitted !== true && admitted !== false) admitted = await admitted;
    if (!admitted) {
      shedToken.inc();
      tokenOutcomes.inc({ outcome: "shed" });
      throw exhausted("too many token requests on this instance", this.retryAfter());
    }
    try {
      const waitMs = await this.redis("admit_token", () =>
        this.d.limits.admitToken(activityId, caller.userId),
      );
      if (waitMs > 0) {
        tokenOutcomes.inc({ outcome: "rate_limited" });
        throw exhausted(`too many buy tokens requested; retry in ${waitMs} ms`, waitMs);
      }
    } finally {
      gate.release();
    }
    const issued = this.d.tokens.issue(caller.userId, activityId, now);
    tokenOutcomes.inc({ outcome: "issued" });
    return { buyToken: issued.token, expiresAt: timestampFromMs(issued.expiresAtMs) };
  }

  // -------------------------------------------------------------------------
  // Buy

  async buy(req: BuyRequest, caller: Caller): Promise<BuyAnswer> {
    requireId("request_id", req.requestId);
    requireId("the caller's user id", caller.userId);
    if (req.quantity < 1) throw invalid(`quantity must be at least 1 (got ${req.quantity})`);
    const entry = this.activity(req.activityId);
    const limit = entry.activity.perUserLimit;
    if (req.quantity > limit)
      throw invalid(`quantity ${req.quantity} is above the per-user limit of ${limit}`);

    const answer = await this.decide(req, caller, entry);
    const result = answer.result ?? BuyResult.UNSPECIFIED;
    trace.getActiveSpan()?.setAttributes({
      "seckill.activity_id": req.activityId,
      "seckill.buy_result": BuyResult[result] ?? result,
    });
    return answer;
  }

  private async decide(req: BuyRequest, caller: Caller, entry: SaleEntry): Promise<BuyAnswer> {
    const { activityId } = req;
    const now = Date.now();
    if (this.blacklisted(caller, now)) return local(BLACKLISTED);

    // A refusal known locally; it may still yield to a retry (see the top of this file).
    const phase = phaseOf(entry, now);
    const refusal: BuyResponse | undefined =
      phase === "ENDED"
        ? ENDED
        : phase === "NOT_STARTED"
          ? frozen(BuyResult.NOT_STARTED, `the sale opens at ${iso(entry.startMs)}`)
          : this.d.flags.has(activityId, now)
            ? SOLD_OUT
            : undefined;

    const t0 = performance.now();
    const check = this.d.tokens.verify(req.buyToken, caller.userId, activityId, now);
    stage.token.observe((performance.now() - t0) / 1000);
    if (!check.ok && check.reason !== "expired")
      return local(refusal ?? TOKEN_INVALID[check.reason]);
    const expired = !check.ok;
    if (expired && now >= check.expiresAtMs + this.d.retryGraceMs)
      return local(refusal ?? TOKEN_INVALID.expired);
    const mayClaim = refusal === undefined && !expired;

    const gate = this.d.buyGate;
    let admitted = gate.enter();
    if (admitted !== true) {
      const t1 = performance.now();
      if (admitted !== false) admitted = await admitted;
      stage.admission.observe((performance.now() - t1) / 1000);
      if (!admitted) {
        shedBuy.inc();
        const retryAfterMs = this.retryAfter();
        return local({
          result: BuyResult.OVERLOADED,
          message: `this instance is busy; retry in ${retryAfterMs} ms`,
          retryAfterMs,
        });
      }
    }
    try {
      const t2 = performance.now();
      const claim = await this.redis("admit_buy", () =>
        this.d.limits.admitBuy(
          activityId,
          caller.userId,
          check.nonce,
          req.requestId,
          check.expiresAtMs + this.d.retryGraceMs - now,
          mayClaim,
        ),
      );
      stage.rateLimit.observe((performance.now() - t2) / 1000);
      switch (claim.kind) {
        case "rate_limited":
          return local({
            result: BuyResult.RATE_LIMITED,
            message: `too many buy attempts; retry in ${claim.retryAfterMs} ms`,
            retryAfterMs: claim.retryAfterMs,
          });
        case "reused":
          return local(refusal ?? (expired ? TOKEN_INVALID.expired : TOKEN_INVALID.reused));
        case "unclaimed":
          return local(refusal ?? TOKEN_INVALID.expired);
        default: // claimed now, or a retry of the request that claimed it
          return await this.reserve(req, caller);
      }
    } finally {
      gate.release();
    }
  }

  private async reserve(req: BuyRequest, caller: Caller): Promise<BuyAnswer> {
    const t0 = performance.now();
    const outcome = await this.d.reserve({
      activityId: req.activityId,
      userId: caller.userId,
      quantity: req.quantity,
      requestId: req.requestId,
    });
    stage.core.observe((performance.now() - t0) / 1000);
    if (outcome.result === BuyResult.UNSPECIFIED)
      throw new ConnectError("seckill-core answered without a result", Code.Internal);
    const soldOut = outcome.soldOut || outcome.result === BuyResult.SOLD_OUT;
    if (soldOut && this.d.flags.mark(req.activityId))
      this.d.log.info({ activityId: req.activityId }, "sold out: local flag set");
    countResult(outcome.result, "core");
    return {
      result: outcome.result,
      orderId: outcome.orderId,
      reservationId: outcome.reservationId,
      paymentDeadline: outcome.paymentDeadline,
      soldOut,
      message: outcome.message,
    };
  }

  // -------------------------------------------------------------------------

  private activity(activityId: string): SaleEntry {
    requireId("activity_id", activityId);
    const entry = this.d.view.entry(activityId);
    if (!entry) throw new ConnectError(`no published activity ${activityId}`, Code.NotFound);
    return entry;
  }

  private blacklisted(caller: Caller, now: number): boolean {
    return (
      this.d.blacklist.isBlocked("user", caller.userId, now) ||
      this.d.blacklist.isBlocked("ip", caller.ip, now)
    );
  }

  private retryAfter(): number {
    const base = this.d.overloadRetryAfterMs;
    return base + Math.floor(Math.random() * base);
  }

  /** Redis failures become UNAVAILABLE (retry with the same request id and token) or INTERNAL. */
  private redis<T>(op: string, run: () => Promise<T>): Promise<T> {
    return withRedisErrors(this.redisFailure, op, run);
  }
}

/** A refusal decided here (not by core), counted by result. */
function local(answer: BuyResponse | BuyAnswer): BuyAnswer {
  countResult(answer.result ?? BuyResult.UNSPECIFIED, "app");
  return answer;
}

function requireId(field: string, value: string): void {
  const problem = idProblem(field, value);
  if (problem) throw invalid(problem);
}

function exhausted(message: string, retryAfterMs: number): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted, {
    "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
    "retry-after-ms": String(retryAfterMs),
  });
}
