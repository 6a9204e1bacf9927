/**
 * For callers of seckill-core (seckill-app, loadtests): concurrent Reserve
 * calls coalesced into batched RPCs, each caller getting its own outcome.
 *
 *   const core = ctx.mesh.client(SeckillCoreService, "seckill-core");
 *   const reserve = createReserver(core, { maxBatch: 256, maxDelayMs: 1 });
 *   const outcome = await reserve({ activityId, userId, quantity, requestId });
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { ReserveOutcome, SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { createBatcher } from "../../shared/src/mesh/batcher.ts";
import { type ReserveItemFields, reserveItemProblem } from "./validation.ts";

export type CoreClient = Client<typeof SeckillCoreService>;

/** One buy request: the fields of a ReserveItem. */
export type ReserveItemInit = ReserveItemFields;

export interface ReserverOptions {
  /** Items per RPC at most; keep it <= the server's MAX_BATCH (default 256). */
  maxBatch?: number;
  /** A lone call waits at most this long for company (default 1 ms). */
  maxDelayMs?: number;
  /** Deadline of each batched RPC; undefined leaves it to the transport (the mesh's breaker timeout). */
  timeoutMs?: number;
  /** Batcher name for the seckill_batch_size metric (default "reserve"). */
  name?: string;
}

export type Reserver = (item: ReserveItemInit) => Promise<ReserveOutcome>;

/**
 * A Reserve that batches. A malformed item (missing activity, user or request
 * id) is refused at once with INVALID_ARGUMENT rather than sent, since the
 * server would fail the whole batch and with it the other callers' items.
 * An RPC failure rejects every caller of that batch; retrying is safe (each
 * item is idempotent by request id, and the mesh already retries once).
 */
export function createReserver(client: CoreClient, opts: ReserverOptions = {}): Reserver {
  const timeoutMs = opts.timeoutMs;
  const batch = createBatcher<ReserveItemInit, ReserveOutcome>({
    name: opts.name ?? "reserve",
    maxSize: opts.maxBatch ?? 256,
    maxDelayMs: opts.maxDelayMs ?? 1,
    run: async (items) => (await client.reserve({ items }, { timeoutMs })).outcomes,
  });
  return (item) => {
    const problem = reserveItemProblem(item);
    if (problem) return Promise.reject(new ConnectError(problem, Code.InvalidArgument));
    return batch(item);
  };
}
