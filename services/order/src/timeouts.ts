/**
 * Background sweepers of every order instance:
 *  - the deadline sweeper cancels PENDING_PAYMENT orders whose payment
 *    deadline passed (small batches; store.cancelExpired returns exactly the
 *    rows this instance cancelled, so only the winner returns their stock);
 *  - the settle sweeper retries telling core about final orders whose
 *    stock_settled is still 0 (the winner's call failed, or it died).
 */
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { OrderEvents } from "./events.ts";
import { expiredOrders, sweepErrors, sweepSeconds } from "./metrics.ts";
import type { StockSettler } from "./settlement.ts";
import type { OrderStore } from "./store.ts";

export interface SweeperOptions {
  store: OrderStore;
  settler: StockSettler;
  events: OrderEvents;
  log: Logger;
  sweepIntervalMs: number;
  sweepBatch: number;
  settleIntervalMs: number;
  settleGraceMs: number;
}

export interface Sweepers {
  /** Runs one deadline round now (tests); resolves with the orders this call cancelled. */
  sweepOnce(): Promise<string[]>;
  stop(): Promise<void>;
}

export function startSweepers(opts: SweeperOptions): Sweepers {
  const { store, settler, events, log } = opts;
  let stopped = false;

  /** Cancels expired orders batch by batch, until fewer than a batch are left. */
  const sweepDeadlines = async (): Promise<string[]> => {
    const cancelled: string[] = [];
    for (let round = 0; round < 50 && !stopped; round++) {
      const rows = await store.cancelExpired(opts.sweepBatch);
      if (rows.length === 0) break;
      expiredOrders.inc(rows.length);
      log.info({ orders: rows.length }, "cancelled orders past their payment deadline");
      await Promise.all(
        rows.map(async (row) => {
          cancelled.push(row.id);
          events.publish(row.id, "CANCELLED");
          await settler.settle(row);
        }),
      );
      if (rows.length < opts.sweepBatch) break;
    }
    return cancelled;
  };

  const settleStragglers = async () => {
    const rows = await store.unsettled(opts.settleGraceMs, 100);
    if (rows.length === 0) return;
    log.info({ orders: rows.length }, "retrying stock settlement with core");
    await Promise.all(rows.map((row) => settler.settle(row)));
  };

  const every = (name: string, intervalMs: number, round: () => Promise<unknown>) => {
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> = Promise.resolve();
    const tick = () => {
      running = (async () => {
        const stop = sweepSeconds.startTimer({ sweeper: name });
        try {
          await round();
        } catch (err) {
          sweepErrors.inc({ sweeper: name });
          log.warn({ sweeper: name, err: String(err) }, "sweeper round failed");
        } finally {
          stop();
          if (!stopped) timer = setTimeout(tick, intervalMs);
        }
      })();
    };
    timer = setTimeout(tick, intervalMs);
    return async () => {
      clearTimeout(timer);
      await running;
      clearTimeout(timer);
    };
  };

  const stopDeadlines = every("deadline", opts.sweepIntervalMs, sweepDeadlines);
  const stopSettle = every("settle", opts.settleIntervalMs, settleStragglers);

  return {
    sweepOnce: sweepDeadlines,
    async stop() {
      stopped = true;
      await Promise.all([stopDeadlines(), stopSettle()]);
    },
  };
}
