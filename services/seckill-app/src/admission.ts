/**
 * Admission control: at most `maxInflight` calls past the gate at once, at
 * most `maxQueue` more waiting, each for at most `maxWaitMs`. Everything else
 * is refused at once, so an overloaded instance answers fast instead of
 * building a queue whose callers time out anyway (and retry, adding load).
 *
 * The fast path (a free slot) is synchronous: no promise, no timer.
 */
import { Gauge } from "prom-client";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";

export interface AdmissionOptions {
  /** Gate name for metrics, e.g. "buy". */
  name: string;
  maxInflight: number;
  /** Waiters beyond the in-flight ones; 0 = shed as soon as every slot is taken. */
  maxQueue: number;
  /** How long a waiter may wait for a slot before it is shed. */
  maxWaitMs: number;
}

interface Waiter {
  resolve(admitted: boolean): void;
  timer: NodeJS.Timeout;
  done: boolean;
}

/** Every live gate, read at scrape time: the hot path updates no metric to count in-flight calls. */
const gates = new Set<AdmissionGate>();

metricsRegistry.getSingleMetric("seckill_app_inflight") ??
  new Gauge({
    name: "seckill_app_inflight",
    help: "Calls past the admission gate and not finished, per gate (buy, token).",
    labelNames: ["gate"],
    registers: [metricsRegistry],
    collect() {
      this.reset();
      for (const gate of gates) this.inc({ gate: gate.name }, gate.inflight);
    },
  });
metricsRegistry.getSingleMetric("seckill_app_admission_queued") ??
  new Gauge({
    name: "seckill_app_admission_queued",
    help: "Calls waiting at the admission gate for a slot, per gate.",
    labelNames: ["gate"],
    registers: [metricsRegistry],
    collect() {
      this.reset();
      for (const gate of gates) this.inc({ gate: gate.name }, gate.queued);
    },
  });

export class AdmissionGate {
  readonly name: string;
  inflight = 0;
  queued = 0;
  private readonly waiters: Waiter[] = [];
  private head = 0;

  constructor(private readonly opts: AdmissionOptions) {
    this.name = opts.name;
    gates.add(this);
  }

  /**
   * true: admitted now (call release() when done); false: shed now;
   * a promise: queued, resolves true (admitted) or false (shed after maxWaitMs).
   */
  enter(): boolean | Promise<boolean> {
    if (this.inflight < this.opts.maxInflight) {
      this.inflight++;
      return true;
    }
    if (this.queued >= this.opts.maxQueue || this.opts.maxWaitMs <= 0) return false;
    this.queued++;
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        resolve,
        done: false,
        timer: setTimeout(() => {
          waiter.done = true;
          this.queued--;
          this.prune();
          resolve(false);
        }, this.opts.maxWaitMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Frees a slot, handing it straight to the oldest live waiter if there is one. */
  release(): void {
    while (this.head < this.waiters.length) {
      const waiter = this.waiters[this.head]!;
      this.waiters[this.head++] = undefined as unknown as Waiter;
      if (waiter.done) continue;
      waiter.done = true;
      clearTimeout(waiter.timer);
      this.queued--;
      this.compact();
      waiter.resolve(true); // the slot passes on: inflight unchanged
      return;
    }
    this.compact();
    this.inflight--;
  }

  /** Stops counting this gate in the metrics. */
  close(): void {
    gates.delete(this);
    for (let i = this.head; i < this.waiters.length; i++) {
      const waiter = this.waiters[i]!;
      if (waiter.done) continue;
      waiter.done = true;
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters.length = 0;
    this.head = 0;
    this.queued = 0;
  }

  /** Timed-out waiters stay in the array until release() passes them; drop them if they pile up. */
  private prune(): void {
    if (this.waiters.length - this.head <= 4 * (this.opts.maxQueue + 16)) return;
    const live = this.waiters.slice(this.head).filter((w) => !w.done);
    this.waiters.length = 0;
    this.waiters.push(...live);
    this.head = 0;
  }

  private compact(): void {
    if (this.head === this.waiters.length) {
      this.waiters.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
  }
}
