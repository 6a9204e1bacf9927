import { type Context, context, trace } from "@opentelemetry/api";
import { histogram, once } from "../runtime/metrics.ts";
import { runWithoutDeadline } from "../transport/deadline.ts";

const batchSizes = once("seckill_batch_size", () =>
  histogram(
    "seckill_batch_size",
    "Items per flushed micro-batch.",
    ["batcher"],
    [1, 2, 4, 8, 16, 32, 64, 128, 256],
  ),
);

export interface BatcherOptions<I, O> {
  /** Name for metrics, e.g. "reserve". */
  name: string;
  /** Flush as soon as this many items wait. */
  maxSize: number;
  /** Flush at the latest this long after the first waiting item arrived. */
  maxDelayMs: number;
  /** Runs one batch; must answer one result per item, in order. */
  run(items: I[]): Promise<O[]>;
}

interface Waiting<I, O> {
  item: I;
  /** The caller's trace context: the first caller's parents the batch's span, the others are linked. */
  caller: Context;
  resolve(value: O): void;
  reject(err: unknown): void;
}

/**
 * Coalesces concurrent calls into batched calls: each caller awaits its own
 * result, while the transport sees one RPC per batch. Under light load a call
 * waits at most `maxDelayMs`; under heavy load batches fill and flush at once.
 */
export function createBatcher<I, O>(opts: BatcherOptions<I, O>): (item: I) => Promise<O> {
  let queue: Waiting<I, O>[] = [];
  let timer: NodeJS.Timeout | undefined;

  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    batchSizes.observe({ batcher: opts.name }, batch.length);
    // A batch belongs to no single caller: its span continues the first caller's trace
    // (so one buyer's trace shows the whole path) and links every other caller's span;
    // it runs without the deadline of whichever caller happened to flush it.
    const [first] = batch;
    const links = batch.slice(1).flatMap((w) => {
      const caller = trace.getSpanContext(w.caller);
      return caller ? [{ context: caller }] : [];
    });
    const span = trace
      .getTracer("seckill")
      .startSpan(
        `batch ${opts.name}`,
        { links, attributes: { "seckill.batch.size": batch.length } },
        first!.caller,
      );
    const run = () =>
      context.with(trace.setSpan(first!.caller, span), () => opts.run(batch.map((w) => w.item)));
    runWithoutDeadline(run)
      .finally(() => span.end())
      .then(
        (results) => {
          if (results.length !== batch.length) {
            const err = new Error(
              `${opts.name}: batch of ${batch.length} answered ${results.length} results`,
            );
            for (const w of batch) w.reject(err);
            return;
          }
          for (const [i, w] of batch.entries()) w.resolve(results[i] as O);
        },
        (err) => {
          for (const w of batch) w.reject(err);
        },
      );
  };

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, caller: context.active(), resolve, reject });
      if (queue.length >= opts.maxSize) flush();
      else timer ??= setTimeout(flush, opts.maxDelayMs);
    });
}
