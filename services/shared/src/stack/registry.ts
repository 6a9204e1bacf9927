/**
 * Bookkeeping that makes cleanup unconditional. Every server the stack starts
 * is recorded here, so that stop(), the end of the process, a signal, or, when
 * this process was killed outright, the next run that uses the stack can find
 * its process and its temporary directory.
 *
 * The limit: a SIGKILLed node process runs no handler. Its servers still die,
 * because they are spawned with a parent-death signal (see process.ts), but
 * their directories stay behind until the next run sweeps them: each directory
 * holds owner.json (which node process made it) and server.pid.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";

/** Every directory the stack creates is os.tmpdir()/seckill-stack-<kind>-XXXXXX. */
export const STACK_DIR_PREFIX = "seckill-stack-";
const OWNER_FILE = "owner.json";
const SERVER_PID_FILE = "server.pid";
const STOP_ALL_BOUND_MS = 10_000;

export interface TrackedServer {
  readonly dataDir: string;
  /** Sends SIGKILL without waiting: the only thing left to do in an 'exit' handler. */
  killNow(): void;
  stop(): Promise<void>;
}

const live = new Set<TrackedServer>();
let exitHandlerInstalled = false;
let sweptOrphans = false;

export function track(server: TrackedServer): void {
  live.add(server);
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    process.on("exit", killAndRemoveAllNow);
  }
}

export function untrack(server: TrackedServer): void {
  live.delete(server);
}

/** Stops every server this process started (the stack's and anyone else's handles). */
export async function stopAllServers(): Promise<void> {
  await Promise.allSettled([...live].map((server) => server.stop()));
}

function killAndRemoveAllNow(): void {
  for (const server of live) {
    server.killNow();
    rmSync(server.dataDir, { recursive: true, force: true });
  }
  live.clear();
}

let uninstallSignalCleanup: (() => void) | undefined;

/**
 * On SIGINT, SIGTERM or SIGHUP: stop every stack server, then exit with
 * 128 + the signal number (130, 143, 129). Only for programs that have no
 * shutdown of their own (the demo, scripts); services handle their signals
 * and call stopAllServers() themselves. A second signal exits at once.
 * Returns a function that removes the handlers.
 */
export function installSignalCleanup(): () => void {
  if (uninstallSignalCleanup) return uninstallSignalCleanup;
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    const exitCode = 128 + constants.signals[signal];
    if (stopping) process.exit(exitCode); // the 'exit' handler still kills everything
    stopping = true;
    const bound = setTimeout(() => process.exit(exitCode), STOP_ALL_BOUND_MS);
    void stopAllServers().finally(() => {
      clearTimeout(bound);
      process.exit(exitCode);
    });
  };
  for (const signal of signals) process.on(signal, onSignal);
  uninstallSignalCleanup = () => {
    for (const signal of signals) process.off(signal, onSignal);
    uninstallSignalCleanup = undefined;
  };
  return uninstallSignalCleanup;
}

/** Creates os.tmpdir()/seckill-stack-<kind>-XXXXXX, owned by this process. */
export function createStackDir(kind: string): string {
  if (!sweptOrphans) {
    sweptOrphans = true;
    sweepOrphans();
  }
  const dir = mkdtempSync(join(tmpdir(), `${STACK_DIR_PREFIX}${kind}-`));
  const owner = { pid: process.pid, startTicks: processStartTicks(process.pid) };
  writeFileSync(join(dir, OWNER_FILE), `${JSON.stringify(owner)}\n`);
  return dir;
}

/** Records the current server pid of a stack directory for a later sweep. */
export function recordServerPid(dir: string, pid: number): void {
  writeFileSync(join(dir, SERVER_PID_FILE), `${pid}\n`);
}

/**
 * Removes the stack directories whose owning node process is gone, killing a
 * server still running in one. Runs once per process before the first start;
 * returns the directories it removed.
 */
export function sweepOrphans(): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(tmpdir()).filter((name) => name.startsWith(STACK_DIR_PREFIX));
  } catch {
    return removed;
  }
  for (const name of names) {
    const dir = join(tmpdir(), name);
    const owner = readJson(join(dir, OWNER_FILE));
    // No owner file: the template cache, or a directory being created right now.
    if (!owner || typeof owner.pid !== "number") continue;
    if (isSameProcessAlive(owner.pid, owner.startTicks)) continue;
    const serverPid = Number(readText(join(dir, SERVER_PID_FILE)));
    // Only kill a pid whose command line names this directory: pids get reused.
    if (serverPid > 0 && readText(`/proc/${serverPid}/cmdline`).includes(dir)) {
      try {
        process.kill(serverPid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    try {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // someone else's directory we may not remove; not ours to fix
    }
  }
  return removed;
}

function isSameProcessAlive(pid: number, startTicks: unknown): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, but another user's process
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie is dead, and a pid that started at another time is someone else.
  if (/\) Z /.test(readText(`/proc/${pid}/stat`))) return false;
  return typeof startTicks !== "number" || processStartTicks(pid) === startTicks;
}

/** Start time of a process in clock ticks since boot (Linux), to tell reused pids apart. */
function processStartTicks(pid: number): number | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  // The command name in parentheses may contain spaces; fields after it are fixed.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[19]); // field 22 of proc(5), counted from field 3
  return Number.isFinite(ticks) && ticks > 0 ? ticks : undefined;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function readJson(path: string): { pid?: unknown; startTicks?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}
