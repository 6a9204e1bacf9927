/** A service started as its own node process, as Kubernetes would run it, for tests and the local stack. */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string };

export interface ServiceProcess {
  readonly pid: number;
  readonly port: number;
  readonly metricsPort: number;
  /** The gateway's HTTP/1.1 port, when the service has one. */
  readonly http1Port: number | undefined;
  /** Every JSON log line the process wrote so far. */
  readonly logs: LogLine[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
}

export interface StartServiceProcessOptions {
  /** Entry file relative to the repository root, e.g. services/shared/src/testing/echo-main.ts. */
  entry: string;
  env: Record<string, string>;
  readyTimeoutMs?: number;
  /** Also append the process's stdout and stderr to this file. */
  logFile?: string;
  /** Keep parsed log lines in memory (tests read them); off for long runs. Default true. */
  keepLogs?: boolean;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startServiceProcess(
  opts: StartServiceProcessOptions,
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", opts.entry], {
    cwd: repoRoot,
    env: { ...process.env, LOG_LEVEL: "info", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  const file = opts.logFile ? createWriteStream(opts.logFile, { flags: "a" }) : undefined;
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
    file?.write(chunk);
  });
  createInterface({ input: child.stdout }).on("line", (text) => {
    file?.write(`${text}\n`);
    // Until ready, keep lines even when not asked to: the ready line carries the ports.
    if (opts.keepLogs === false && ready) return;
    try {
      logs.push(JSON.parse(text) as LogLine);
    } catch {
      logs.push({ msg: text });
    }
    for (const wake of waiters) wake();
  });
  child.once("exit", () => file?.end());
  let ready = false;
  let exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      exitStatus = { code, signal };
      resolve(exitStatus);
      for (const wake of waiters) wake();
    }),
  );

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 10_000) =>
    new Promise<LogLine>((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < logs.length; seen++) {
          if (match(logs[seen]!)) return done(() => resolve(logs[seen]!));
        }
        if (exitStatus)
          done(() =>
            reject(new Error(`${opts.entry} exited (${JSON.stringify(exitStatus)}): ${stderr}`)),
          );
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new Error(
                `${opts.entry}: no matching log line within ${timeoutMs} ms; stderr: ${stderr}`,
              ),
            ),
          ),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      waiters.add(check);
      check();
    });

  const serving = await waitForLog((l) => l.msg === "serving", opts.readyTimeoutMs ?? 20_000);
  ready = true;
  return {
    pid: child.pid!,
    port: serving.port as number,
    metricsPort: serving.metricsPort as number,
    http1Port: serving.http1Port as number | undefined,
    logs,
    exited,
    waitForLog,
    kill: (signal = "SIGKILL") => {
      child.kill(signal);
    },
    async stop() {
      if (exitStatus) return;
      child.kill("SIGTERM");
      await exited;
    },
  };
}
