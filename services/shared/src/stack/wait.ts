/** Polling until a server is ready, with errors that show why it is not. */
import { readFileSync } from "node:fs";
import { sleep } from "../runtime/time.ts";

export interface WaitForOptions {
  timeoutMs: number;
  /** Names what we wait for in the timeout error, e.g. "redis-server on 127.0.0.1:6380". */
  what: string;
  /** The server's log: its last lines go into the error, which is usually all one needs. */
  logFile?: string;
  /** Returns a reason to stop waiting at once, e.g. because the server process exited. */
  giveUp?: () => string | undefined;
  /** First pause between checks; it grows up to 100 ms. */
  intervalMs?: number;
}

/**
 * Calls `check` until it returns true. A check that throws counts as "not yet";
 * its last message goes into the timeout error.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  options: WaitForOptions,
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let interval = options.intervalMs ?? 10;
  let lastProblem = "";
  for (;;) {
    const reason = options.giveUp?.();
    if (reason) throw waitError(`${options.what}: ${reason}`, lastProblem, options.logFile);
    try {
      if (await check()) return;
      lastProblem = "";
    } catch (error) {
      lastProblem = (error as Error).message;
    }
    if (Date.now() >= deadline) {
      const message = `${options.what} not ready after ${options.timeoutMs} ms`;
      throw waitError(message, lastProblem, options.logFile);
    }
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())));
    interval = Math.min(interval * 2, 100);
  }
}

/** The last `lines` lines of a text file, or a note saying why there are none. */
export function tailFile(path: string, lines = 20): string {
  try {
    const text = readFileSync(path, "utf8").trimEnd();
    return text ? text.split("\n").slice(-lines).join("\n") : "(empty)";
  } catch (error) {
    return `(cannot read: ${(error as Error).message})`;
  }
}

function waitError(message: string, lastProblem: string, logFile: string | undefined): Error {
  let text = message;
  if (lastProblem) text += ` (last check: ${lastProblem})`;
  if (logFile) text += `\n--- last lines of ${logFile} ---\n${tailFile(logFile)}`;
  return new Error(text);
}
