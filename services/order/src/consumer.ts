/**
 * The order-intent consumer: each activity's order-intent stream → rows in
 * MySQL, through order's consumer group (stream, group, entry format and
 * dead-letter stream: the data-plane contract, shared data-plane/order-intent.ts).
 *
 * One loop per activity, each with its own blocking Redis connection. One
 * XREADGROUP over many streams would save connections, but the keys of two
 * activities live in different hash slots, so on Redis Cluster that command
 * fails with CROSSSLOT; separate loops also keep a hot activity from delaying
 * a quiet one and let the activities' batches commit in parallel.
 *
 * A loop, for its stream:
 *  1. creates the group (XGROUP CREATE … 0 MKSTREAM; BUSYGROUP is fine);
 *  2. reads its own pending entries first (XREADGROUP … 0): what this consumer
 *     name read but never acknowledged before a restart or a failed batch;
 *  3. then new entries (XREADGROUP … BLOCK … >), up to CONSUMER_INFLIGHT
 *     batches at once (the next read runs while the previous batch commits);
 *  4. inserts each batch in ONE transaction with INSERT IGNORE (the primary
 *     key is the order id, so a redelivered entry never makes a second row),
 *     and XACKs the batch only after COMMIT. A failed batch stays pending; the
 *     loop backs off and re-reads its pending entries;
 *  5. every CLAIM_INTERVAL_MS takes over entries that another (dead) consumer
 *     left pending longer than CLAIM_IDLE_MS (XAUTOCLAIM) and inserts them;
 *  6. moves entries that can never be an order (malformed) to the activity's
 *     dead-letter stream with the reason, and acknowledges them, so they
 *     don't block the stream.
 * Stopping finishes the batches under way; whatever was read and not
 * committed stays pending for the next reader. Nothing is lost either way.
 */
import { type Span, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";
import type { Kysely } from "kysely";
import { orderChannel } from "../../shared/src/data-plane/keys.ts";
import {
  deadLetterStream,
  decodeOrderIntent,
  encodeDeadLetter,
  ORDER_CONSUMER_GROUP as GROUP,
  type OrderIntent,
  orderIntentStream,
} from "../../shared/src/data-plane/order-intent.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import { backoffMs, sleep } from "../../shared/src/runtime/time.ts";
import type { ActivityCatalog } from "../../shared/src/sale/activities.ts";
import type { Redis } from "../../shared/src/stores/redis.ts";
import type { Database } from "./db.ts";
import {
  consumedEntries,
  consumerBatchSizes,
  consumerErrors,
  consumerLoops,
  insertSeconds,
  intentAge,
  reclaimedEntries,
  streamLag,
  streamLength,
  streamPending,
} from "./metrics.ts";
import { intentRow } from "./stream.ts";

/** Which activities to consume; ActivityCatalog in production, a fixed list in tests. */
export interface ActivitySource {
  ids(): string[];
  /** Calls `onChange` whenever the set may have changed; returns an unsubscribe. */
  subscribe(onChange: () => void): () => void;
}

export function catalogSource(catalog: ActivityCatalog): ActivitySource {
  return {
    ids: () => catalog.list().map((a) => a.id),
    subscribe: (onChange) => catalog.subscribe(() => onChange()),
  };
}

export function staticSource(ids: readonly string[]): ActivitySource {
  return { ids: () => [...ids], subscribe: () => () => {} };
}

export interface ConsumerOptions {
  /** Command connection (acks, claims, dead letters, publishes); each loop duplicates it to block. */
  redis: Redis;
  db: Kysely<Database>;
  log: Logger;
  tracer?: Tracer;
  /** Consumer name in the group: the instance id. */
  consumerName: string;
  batchSize: number;
  /** Batches of one activity in flight at once. */
  inflight: number;
  blockMs: number;
  claimIdleMs: number;
  claimIntervalMs: number;
  statsIntervalMs: number;
  /** Publish "PENDING_PAYMENT" on `order:<id>` for each inserted order (WatchOrder). Default true. */
  publishCreated?: boolean;
}

type RawEntry = [id: string, fields: string[] | null];

/** Consumes the order streams of every activity the source lists. */
export class OrderConsumer {
  private readonly loops = new Map<string, StreamLoop>();
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly opts: ConsumerOptions,
    private readonly source: ActivitySource,
  ) {}

  start(): void {
    this.unsubscribe = this.source.subscribe(() => this.sync());
    this.sync();
  }

  /** Activities being consumed now. */
  activities(): string[] {
    return [...this.loops.keys()];
  }

  /** Stops reading, finishes the batches under way; unacknowledged entries stay pending. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    await Promise.all([...this.loops.values()].map((loop) => loop.stop()));
    this.loops.clear();
    consumerLoops.set(0);
  }

  private sync(): void {
    if (this.stopped) return;
    const wanted = new Set(this.source.ids());
    for (const id of wanted) {
      const existing = this.loops.get(id);
      if (existing) {
        existing.retiring = false;
        continue;
      }
      const loop = new StreamLoop(this.opts, id, () => {
        if (this.loops.get(id) === loop) this.loops.delete(id);
        consumerLoops.set(this.loops.size);
      });
      this.loops.set(id, loop);
      loop.start();
    }
    // An activity gone from the catalog is still drained: its loop ends once nothing is left.
    for (const [id, loop] of this.loops) if (!wanted.has(id)) loop.retiring = true;
    consumerLoops.set(this.loops.size);
  }
}

/** One activity's stream: reads, inserts, acknowledges, reclaims. */
class StreamLoop {
  readonly key: string;
  private readonly deadKey: string;
  private readonly log: Logger;
  private readonly tracer: Tracer;
  private readonly labels: { activity: string };
  private conn: Redis | undefined;
  /** Where the next read of our own pending entries starts; null once they are drained (read new). */
  private cursor: string | null = "0";
  private readonly inflight = new Set<Promise<void>>();
  private batchFailed = false;
  private groupReady = false;
  private nextClaimAt = 0;
  private nextStatsAt = 0;
  private stopping = false;
  private readonly stopController = new AbortController();
  private done: Promise<void> = Promise.resolve();
  /** Set when the activity left the catalog: stop once its stream is fully consumed. */
  retiring = false;

  constructor(
    private readonly opts: ConsumerOptions,
    readonly activityId: string,
    private readonly onExit: () => void,
  ) {
    this.key = orderIntentStream(activityId);
    this.deadKey = deadLetterStream(activityId);
    this.log = opts.log.child({ activity: activityId, stream: this.key });
    this.tracer = opts.tracer ?? trace.getTracer("order-consumer");
    this.labels = { activity: activityId };
    // The first claim round waits one idle period: a restarted fleet reads its own pending first.
    this.nextClaimAt = Date.now() + Math.min(opts.claimIdleMs, opts.claimIntervalMs);
  }

  start(): void {
    this.done = this.run().finally(this.onExit);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopController.abort();
    // A blocked read returns within blockMs; if Redis is unreachable, stop waiting for it.
    const waited = new AbortController();
    const gaveUp = sleep(this.opts.blockMs + 2000, waited.signal).then(() => "timeout" as const);
    const result = await Promise.race([this.done.then(() => "done" as const), gaveUp]);
    waited.abort();
    if (result === "timeout") {
      this.log.warn("consumer loop did not stop in time; closing its connection");
      this.conn?.disconnect();
      await Promise.race([this.done, sleep(5000)]);
    }
  }

  private async run(): Promise<void> {
    this.conn = this.opts.redis.duplicate({ connectionName: `order-consumer:${this.activityId}` });
    this.conn.on("error", () => {}); // the command connection already logs connection errors
    this.log.info({ consumer: this.opts.consumerName }, "consuming order stream");
    let attempt = 0;
    try {
      while (!this.stopping) {
        try {
          if (!this.groupReady) await this.ensureGroup();
          if (this.batchFailed) {
            // Let the other batches finish, then re-read everything still pending from the start.
            await this.drain();
            this.batchFailed = false;
            this.cursor = "0";
            await sleep(backoffMs(attempt++, 5000), this.stopController.signal);
            continue;
          }
          const now = Date.now();
          if (now >= this.nextClaimAt) {
            this.nextClaimAt = now + this.opts.claimIntervalMs;
            await this.reclaim();
          }
          if (now >= this.nextStatsAt) {
            this.nextStatsAt = now + this.opts.statsIntervalMs;
            await this.refreshStats();
          }
          const from = this.cursor ?? ">";
          const entries = await this.read(from);
          if (from !== ">") {
            this.cursor = entries.length > 0 ? entries[entries.length - 1]![0] : null;
            if (this.cursor === null) this.log.debug("own pending entries drained; reading new");
          }
          if (entries.length > 0) {
            await this.dispatch(entries);
            attempt = 0;
          } else if (from === ">" && this.retiring && (await this.fullyConsumed())) {
            this.log.info("activity left the catalog and its stream is consumed; stopping");
            break;
          }
        } catch (err) {
          if (this.stopping) break;
          const message = err instanceof Error ? err.message : String(err);
          if (message.includes("NOGROUP")) this.groupReady = false;
          consumerErrors.inc({ ...this.labels, stage: "read" });
          this.log.warn({ err: message }, "order stream read failed; retrying");
          await sleep(backoffMs(attempt++, 5000), this.stopController.signal);
        }
      }
      await this.drain();
    } finally {
      this.conn.disconnect();
      this.log.info("stopped consuming order stream");
    }
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.opts.redis.call("XGROUP", "CREATE", this.key, GROUP, "0", "MKSTREAM");
      this.log.info({ group: GROUP }, "created consumer group");
    } catch (err) {
      if (!String(err).includes("BUSYGROUP")) {
        consumerErrors.inc({ ...this.labels, stage: "group" });
        throw err;
      }
    }
    this.groupReady = true;
    this.cursor = "0";
  }

  private async read(from: string): Promise<RawEntry[]> {
    const args: (string | number)[] = [
      "GROUP",
      GROUP,
      this.opts.consumerName,
      "COUNT",
      this.opts.batchSize,
    ];
    if (from === ">") args.push("BLOCK", this.opts.blockMs);
    args.push("STREAMS", this.key, from);
    const reply = (await this.conn!.call("XREADGROUP", ...args)) as [string, RawEntry[]][] | null;
    return reply?.[0]?.[1] ?? [];
  }

  /** Starts processing a batch, waiting first while CONSUMER_INFLIGHT batches are under way. */
  private async dispatch(entries: RawEntry[]): Promise<void> {
    while (this.inflight.size >= this.opts.inflight) await Promise.race(this.inflight);
    const task: Promise<void> = this.process(entries)
      .catch((err) => {
        this.batchFailed = true;
        this.log.warn(
          { err: err instanceof Error ? err.message : String(err), entries: entries.length },
          "order batch failed; its entries stay pending and are retried",
        );
      })
      .finally(() => this.inflight.delete(task));
    this.inflight.add(task);
  }

  private async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Insert (one transaction), then acknowledge, dead-letter and announce. Throws → nothing acked. */
  private process(entries: RawEntry[]): Promise<void> {
    return this.tracer.startActiveSpan(
      "order.consume_batch",
      {
        attributes: {
          "seckill.activity_id": this.activityId,
          "seckill.batch_size": entries.length,
        },
      },
      async (span: Span) => {
        try {
          await this.processIn(entries, span);
        } catch (err) {
          span.recordException(err instanceof Error ? err : String(err));
          span.setStatus({ code: SpanStatusCode.ERROR });
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }

  private async processIn(entries: RawEntry[], span: Span): Promise<void> {
    const good: { id: string; intent: OrderIntent }[] = [];
    const bad: { id: string; fields: string[]; reason: string }[] = [];
    let gone = 0;
    for (const [id, fields] of entries) {
      if (fields === null) {
        gone++; // trimmed or deleted from the stream: nothing left to insert
        continue;
      }
      const parsed = decodeOrderIntent(this.activityId, fields);
      if (parsed.ok) good.push({ id, intent: parsed.intent });
      else bad.push({ id, fields, reason: parsed.reason });
    }
    consumerBatchSizes.observe(this.labels, entries.length);

    const inserted = good.length > 0 ? await this.insert(good.map((g) => g.intent)) : 0;
    await this.acknowledge(
      entries.map(([id]) => id),
      good.map((g) => g.intent.orderId),
      bad,
    );

    const now = Date.now();
    for (const { intent } of good) intentAge.observe(this.labels, (now - intent.createdMs) / 1000);
    const duplicates = good.length - inserted;
    if (inserted > 0) consumedEntries.inc({ ...this.labels, outcome: "inserted" }, inserted);
    if (duplicates > 0) consumedEntries.inc({ ...this.labels, outcome: "duplicate" }, duplicates);
    if (bad.length > 0)
      consumedEntries.inc({ ...this.labels, outcome: "dead_lettered" }, bad.length);
    if (gone > 0) consumedEntries.inc({ ...this.labels, outcome: "deleted" }, gone);
    span.setAttributes({
      "seckill.inserted": inserted,
      "seckill.duplicates": duplicates,
      "seckill.dead_lettered": bad.length,
    });
    if (duplicates > 0) this.log.info({ duplicates }, "redelivered entries ignored (rows existed)");
    for (const b of bad)
      this.log.error(
        { entryId: b.id, reason: b.reason, deadLetter: this.deadKey },
        "malformed order intent moved to the dead-letter stream",
      );
  }

  /** One transaction; a few quick retries, then the error goes up and the entries stay pending. */
  private async insert(intents: OrderIntent[]): Promise<number> {
    // Sorted by key: two consumers inserting overlapping redeliveries lock in the same order.
    const rows = intents.map(intentRow).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let attempt = 0; ; attempt++) {
      const stop = insertSeconds.startTimer(this.labels);
      try {
        const result = await this.opts.db
          .transaction()
          .execute((trx) => trx.insertInto("orders").ignore().values(rows).executeTakeFirst());
        stop();
        return Number(result.numInsertedOrUpdatedRows ?? 0);
      } catch (err) {
        consumerErrors.inc({ ...this.labels, stage: "insert" });
        if (attempt >= 2 || this.stopping) throw err;
        await sleep(backoffMs(attempt, 1000));
      }
    }
  }

  private async acknowledge(
    ids: string[],
    createdOrders: string[],
    bad: { id: string; fields: string[]; reason: string }[],
  ): Promise<void> {
    const pipeline = this.opts.redis.pipeline();
    for (const b of bad) {
      // Dead letter before the ack: a crash in between re-delivers it (a second dead letter), never loses it.
      pipeline.xadd(
        this.deadKey,
        "*",
        ...encodeDeadLetter({
          fields: b.fields,
          entryId: b.id,
          reason: b.reason,
          consumer: this.opts.consumerName,
          atMs: Date.now(),
        }),
      );
    }
    pipeline.xack(this.key, GROUP, ...ids);
    if (this.opts.publishCreated !== false)
      for (const orderId of createdOrders)
        pipeline.publish(orderChannel(orderId), "PENDING_PAYMENT");
    const results = (await pipeline.exec()) ?? [];
    const failed = results.slice(0, bad.length + 1).find(([err]) => err);
    if (failed) {
      consumerErrors.inc({ ...this.labels, stage: "ack" });
      throw failed[0];
    }
  }

  /** Takes over entries idle for CLAIM_IDLE_MS in any consumer of the group, and inserts them. */
  private async reclaim(): Promise<void> {
    let cursor = "0-0";
    let total = 0;
    try {
      for (let round = 0; round < 100 && !this.stopping; round++) {
        const reply = (await this.opts.redis.call(
          "XAUTOCLAIM",
          this.key,
          GROUP,
          this.opts.consumerName,
          this.opts.claimIdleMs,
          cursor,
          "COUNT",
          this.opts.batchSize,
        )) as [string, RawEntry[], string[]?];
        const [next, entries] = reply;
        if (entries.length > 0) {
          total += entries.length;
          reclaimedEntries.inc(this.labels, entries.length);
          await this.dispatch(entries);
        }
        cursor = next;
        if (cursor === "0-0") break;
      }
    } catch (err) {
      consumerErrors.inc({ ...this.labels, stage: "claim" });
      this.log.warn({ err: String(err) }, "XAUTOCLAIM failed; trying again later");
    }
    if (total > 0)
      this.log.info(
        { entries: total, idleMs: this.opts.claimIdleMs },
        "took over pending entries of another consumer",
      );
  }

  private async refreshStats(): Promise<void> {
    try {
      const [groups, length] = await Promise.all([
        this.opts.redis.call("XINFO", "GROUPS", this.key) as Promise<unknown[][]>,
        this.opts.redis.xlen(this.key),
      ]);
      streamLength.set(this.labels, length);
      for (const raw of groups) {
        const info = pairs(raw);
        if (info.get("name") !== GROUP) continue;
        streamPending.set(this.labels, Number(info.get("pending") ?? 0));
        const lag = info.get("lag");
        if (lag !== null && lag !== undefined) streamLag.set(this.labels, Number(lag));
      }
    } catch (err) {
      consumerErrors.inc({ ...this.labels, stage: "stats" });
      this.log.debug({ err: String(err) }, "stream stats failed");
    }
  }

  /** Nothing undelivered and nothing pending in the whole group. */
  private async fullyConsumed(): Promise<boolean> {
    const groups = (await this.opts.redis.call("XINFO", "GROUPS", this.key)) as unknown[][];
    const info = groups.map(pairs).find((g) => g.get("name") === GROUP);
    return info !== undefined && Number(info.get("pending")) === 0 && Number(info.get("lag")) === 0;
  }
}

function pairs(flat: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
}
