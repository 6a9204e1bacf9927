import type { Etcd3, Watcher } from "etcd3";
import type { Logger } from "../runtime/log.ts";
import { counter, once } from "../runtime/metrics.ts";
import { backoffMs, sleep } from "../runtime/time.ts";

const resyncs = once("seckill_etcd_watch_resyncs_total", () =>
  counter(
    "seckill_etcd_watch_resyncs_total",
    "Full re-reads of a watched etcd prefix after a watch failure.",
    ["prefix"],
  ),
);

export interface PrefixWatchOptions {
  etcd: Etcd3;
  prefix: string;
  log: Logger;
  /** Called with the full key → value map after the first read and after every change. */
  onChange: (entries: ReadonlyMap<string, string>) => void;
}

/**
 * A live copy of every key under an etcd prefix: read it all, then watch from
 * the next revision. When the watch fails (etcd compacted the revision we were
 * waiting for, or the watch was cancelled) it reads everything again and
 * re-watches. While etcd is unreachable the last copy stays in place: callers
 * keep serving with what they knew (static stability).
 */
export class PrefixWatch {
  private entries = new Map<string, string>();
  private watcher: Watcher | undefined;
  private readonly closed = new AbortController();
  private resyncing: Promise<void> | undefined;
  private firstSync: Promise<void> | undefined;
  revision = 0;

  constructor(private readonly opts: PrefixWatchOptions) {}

  /** Starts watching; resolves after the first full read (retrying while etcd is down). */
  start(): Promise<void> {
    this.firstSync ??= this.resync();
    return this.firstSync;
  }

  get snapshot(): ReadonlyMap<string, string> {
    return this.entries;
  }

  async close(): Promise<void> {
    this.closed.abort();
    await this.dropWatcher();
  }

  /** Cancels the current watch; etcd may never answer the cancel of a broken one, so don't wait long. */
  private async dropWatcher(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher) await Promise.race([watcher.cancel().catch(() => {}), sleep(500)]);
  }

  private resync(): Promise<void> {
    this.resyncing ??= this.syncUntilDone().finally(() => {
      this.resyncing = undefined;
    });
    return this.resyncing;
  }

  private async syncUntilDone(): Promise<void> {
    for (let attempt = 0; !this.closed.signal.aborted; attempt++) {
      try {
        await this.sync();
        return;
      } catch (err) {
        if (attempt === 0 || attempt % 10 === 0) {
          this.opts.log.warn(
            { prefix: this.opts.prefix, attempt, err: String(err) },
            "etcd read failed; keeping the last known entries",
          );
        }
        await sleep(backoffMs(attempt), this.closed.signal);
      }
    }
  }

  private async sync(): Promise<void> {
    const { etcd, prefix } = this.opts;
    await this.dropWatcher();
    const res = await etcd.getAll().prefix(prefix).exec();
    this.revision = Number(res.header.revision);
    this.entries = new Map(res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
    this.opts.onChange(this.entries);
    if (this.closed.signal.aborted) return;
    const watcher = await etcd
      .watch()
      .prefix(prefix)
      .startRevision(String(this.revision + 1))
      .create();
    this.watcher = watcher;
    if (this.closed.signal.aborted) {
      await this.dropWatcher();
      return;
    }
    watcher.on("data", (res) => {
      const next = new Map(this.entries);
      for (const event of res.events) {
        const key = event.kv.key.toString();
        if (event.type === "Put") next.set(key, event.kv.value.toString());
        else next.delete(key);
      }
      this.revision = Number(res.header.revision);
      this.entries = next;
      this.opts.onChange(next);
    });
    watcher.on("error", (err) => {
      if (this.watcher !== watcher || this.closed.signal.aborted) return;
      resyncs.inc({ prefix });
      this.opts.log.warn({ prefix, err: String(err) }, "etcd watch failed; re-reading the prefix");
      // This watcher is dead: forget it rather than cancel it (etcd already did).
      this.watcher = undefined;
      void this.resync();
    });
  }
}
