/** Benchmark child processes spoken to over IPC: shared by the transport bench and `npm run bench`. */
import type { ChildProcess } from "node:child_process";

/** The first IPC message of `child` that `match` accepts; fails if the child exits first or time runs out. */
export function nextMessage<T>(
  child: ChildProcess,
  match: (m: unknown) => m is T,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    const onMessage = (m: unknown) => {
      if (!match(m)) return;
      done();
      resolve(m);
    };
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`child exited (${signal ?? code}) before answering`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("message", onMessage);
    child.on("exit", onExit);
  });
}

/** Matches a message object that has `key`. */
export const has =
  <K extends string>(key: K) =>
  (m: unknown): m is Record<K, number> =>
    typeof m === "object" && m !== null && key in m;

/** Matches one exact message. */
export const is =
  <T extends string>(value: T) =>
  (m: unknown): m is T =>
    m === value;

/** Asks the child to stop ("stop" over IPC), SIGKILL after 5 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  if (child.connected) child.send("stop");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
