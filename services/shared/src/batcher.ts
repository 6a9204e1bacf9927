import { histogram, once } from "./metrics.ts";

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
    opts.run(batch.map((w) => w.item)).then(
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
      queue.push({ item, resolve, reject });
      if (queue.length >= opts.maxSize) flush();
      else timer ??= setTimeout(flush, opts.maxDelayMs);
    });
}
