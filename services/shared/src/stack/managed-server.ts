/**
 * The life cycle shared by every stack server: a temporary directory, a child
 * process that may be started, crashed and restarted on it, a readiness check,
 * and a stop that always removes the directory.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { ServerProcess } from "./process.ts";
import { createStackDir, recordServerPid, type TrackedServer, track, untrack } from "./registry.ts";
import { waitFor } from "./wait.ts";

const STOP_GRACE_MS = 5000;

export interface ServerRecipe {
  /** Names the server in errors, e.g. "redis-server on 127.0.0.1:6380". */
  what: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** True once the server serves requests; may throw while it cannot. */
  isReady(): Promise<boolean>;
  readyTimeoutMs: number;
  /** Runs after every (re)start once the server is ready. */
  afterReady?(): Promise<void>;
}

/** What every handle offers besides its own connection details. */
export interface ServerHandle {
  /** The temporary directory (data, log, pid file); removed by stop(). */
  readonly dataDir: string;
  /** The server's log (stdout, stderr and its own log file). */
  readonly logFile: string;
  /** Pid of the running server process (changes on restart). */
  readonly pid: number;
  /** How long the first start took, in milliseconds, until ready. */
  readonly startupMs: number;
  /** SIGTERM, at most 5 s for a clean exit, then SIGKILL; then removes dataDir. Idempotent. */
  stop(): Promise<void>;
  /**
   * Sends a signal and waits until the process is gone, without any cleanup:
   * SIGKILL simulates a crash. SIGSTOP/SIGCONT freeze and thaw it without waiting.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same ports and data (stops it first if running). */
  restart(): Promise<void>;
  /** A short line for progress tables. */
  describe(): string;
}

export class ManagedServer implements TrackedServer {
  readonly logFile: string;
  /** Set by startManaged: preparing the directory plus the first start. */
  startupMs = 0;
  private process: ServerProcess | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly dataDir: string,
    private readonly recipe: ServerRecipe,
  ) {
    this.logFile = join(dataDir, "server.log");
  }

  /** Creates the directory (os.tmpdir()/seckill-stack-<kind>-*) and registers it for cleanup. */
  static create(kind: string, recipe: (dataDir: string) => ServerRecipe): ManagedServer {
    const dataDir = createStackDir(kind);
    const server = new ManagedServer(dataDir, recipe(dataDir));
    track(server);
    return server;
  }

  get pid(): number {
    return this.process?.pid ?? -1;
  }

  get running(): boolean {
    return this.process?.running ?? false;
  }

  /** Spawns the server and waits until it is ready; on failure it is killed again. */
  async start(): Promise<void> {
    if (this.stopping) throw new Error(`${this.recipe.what}: already stopped`);
    if (this.running) throw new Error(`${this.recipe.what}: already running`);
    const child = ServerProcess.spawn({
      command: this.recipe.command,
      args: this.recipe.args,
      env: this.recipe.env,
      logFile: this.logFile,
    });
    this.process = child;
    if (child.pid > 0) recordServerPid(this.dataDir, child.pid);
    try {
      await waitFor(() => this.recipe.isReady(), {
        what: this.recipe.what,
        timeoutMs: this.recipe.readyTimeoutMs,
        logFile: this.logFile,
        giveUp: () => (child.running ? undefined : `the process ${child.describeExit()}`),
      });
      await this.recipe.afterReady?.();
    } catch (error) {
      await child.kill("SIGKILL");
      throw error;
    }
  }

  async restart(): Promise<void> {
    await this.process?.terminate(STOP_GRACE_MS);
    await this.start();
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.process?.kill(signal);
  }

  killNow(): void {
    this.process?.signal("SIGKILL");
  }

  stop(): Promise<void> {
    this.stopping ??= this.stopAndRemove();
    return this.stopping;
  }

  private async stopAndRemove(): Promise<void> {
    try {
      await this.process?.terminate(STOP_GRACE_MS);
    } finally {
      await rm(this.dataDir, { recursive: true, force: true, maxRetries: 3 });
      untrack(this);
    }
  }
}

/**
 * Runs `launch` again (with fresh ports) when the server could not bind its
 * port: freePort() cannot reserve a port, so another process may take it first.
 */
/** The ServerHandle part every kind of server shares; each adds its address and describe(). */
export function handleOf(server: ManagedServer): Omit<ServerHandle, "describe"> {
  return {
    dataDir: server.dataDir,
    logFile: server.logFile,
    get pid() {
      return server.pid;
    },
    startupMs: server.startupMs,
    stop: () => server.stop(),
    kill: (signal) => server.kill(signal),
    restart: () => server.restart(),
  };
}

export async function retryOnPortClash<T>(launch: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch();
    } catch (error) {
      const clash = /already in use/i.test((error as Error).message);
      if (!clash || attempt >= attempts) throw error;
    }
  }
}

/**
 * Starts a server on its own directory; if it does not come up, the directory
 * is removed and the error (with the log tail) is thrown.
 */
export async function startManaged(
  kind: string,
  recipe: (dataDir: string) => ServerRecipe,
  prepare?: (dataDir: string) => Promise<void>,
): Promise<ManagedServer> {
  const server = ManagedServer.create(kind, recipe);
  try {
    const began = performance.now();
    await prepare?.(server.dataDir);
    await server.start();
    server.startupMs = Math.round(performance.now() - began);
    return server;
  } catch (error) {
    await server.stop();
    throw error;
  }
}
