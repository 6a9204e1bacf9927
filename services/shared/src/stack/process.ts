/** One run of a server binary as a child process of this node process. */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { findBinary } from "./binaries.ts";

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  error?: Error;
}

export interface SpawnSpec {
  command: string;
  args: string[];
  /** stdout and stderr are appended here. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
}

// Signals after which the process keeps running, so there is no exit to wait for.
const NON_TERMINATING = new Set<NodeJS.Signals>(["SIGSTOP", "SIGTSTP", "SIGCONT"]);

// util-linux setpriv sets PR_SET_PDEATHSIG and then execs the server (same pid):
// the kernel kills the server when this node process dies, even by SIGKILL,
// which no handler in node can do.
const setpriv = process.platform === "linux" ? findBinary("setpriv") : undefined;

export class ServerProcess {
  private status: ExitStatus | undefined;
  private readonly exited: Promise<ExitStatus>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.status = { code, signal };
        resolve(this.status);
      });
      child.once("error", (error) => {
        // 'error' without 'exit' means the spawn itself failed
        if (child.pid === undefined) {
          this.status = { code: null, signal: null, error };
          resolve(this.status);
        }
      });
    });
  }

  static spawn(spec: SpawnSpec): ServerProcess {
    const [command, args] = setpriv
      ? [setpriv, ["--pdeathsig", "KILL", "--", spec.command, ...spec.args]]
      : [spec.command, spec.args];
    const log = openSync(spec.logFile, "a");
    try {
      const child = spawn(command, args, {
        stdio: ["ignore", log, log],
        env: spec.env ?? process.env,
        // Own process group: a Ctrl-C in the terminal reaches only us, and we stop
        // the servers in our order (services first, then etcd and the stores).
        detached: true,
      });
      // A server left running must not keep node alive; the 'exit' handler kills it.
      child.unref();
      return new ServerProcess(child);
    } finally {
      closeSync(log); // the child has its own copy
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.status === undefined;
  }

  /** Why the process ended, once it has. */
  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  describeExit(): string {
    const status = this.status;
    if (!status) return "running";
    if (status.error) return `could not start: ${status.error.message}`;
    return status.signal ? `killed by ${status.signal}` : `exited with code ${status.code}`;
  }

  /** Sends a signal; a process that is already gone is not an error. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      this.child.kill(signal);
    } catch {
      // raced with its exit
    }
  }

  /** Resolves true once the process has exited, false after timeoutMs. */
  async waitForExit(timeoutMs: number): Promise<boolean> {
    if (!this.running) return true;
    // A ref'd timer keeps node alive while we wait: the child itself is unref'd.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Sends `signal` and waits until the process is gone (not for SIGSTOP/SIGCONT,
   * which leave it running). Rejects if it is still there after timeoutMs.
   */
  async kill(signal: NodeJS.Signals = "SIGKILL", timeoutMs = 10_000): Promise<void> {
    this.signal(signal);
    if (NON_TERMINATING.has(signal)) return;
    if (!(await this.waitForExit(timeoutMs))) {
      throw new Error(`pid ${this.pid} still running ${timeoutMs} ms after ${signal}`);
    }
  }

  /** SIGTERM, up to graceMs for a clean exit, then SIGKILL. */
  async terminate(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.signal("SIGTERM");
    this.signal("SIGCONT"); // a server frozen with SIGSTOP could not act on SIGTERM
    if (await this.waitForExit(graceMs)) return;
    await this.kill("SIGKILL");
  }
}
