/** A private MariaDB server on a loopback port, for tests and the demo. */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createConnection } from "mysql2/promise";
import { ensureBinary } from "./binaries.ts";
import {
  handleOf,
  type ManagedServer,
  retryOnPortClash,
  type ServerHandle,
  startManaged,
} from "./managed-server.ts";
import { freePort, LOOPBACK } from "./net.ts";
import { STACK_DIR_PREFIX } from "./registry.ts";

const execFileAsync = promisify(execFile);

export interface MariaDbOptions {
  /**
   * Run mariadb-install-db for this server instead of copying the cached,
   * pristine data directory (about 0.7 s slower; for measuring).
   */
  freshInstall?: boolean;
  readyTimeoutMs?: number;
}

export interface MariaDbServer extends ServerHandle {
  readonly host: string;
  readonly port: number;
  readonly user: "root";
  readonly password: "";
  readonly database: "seckill";
  /** mysql://root@127.0.0.1:<port>/seckill */
  readonly uri: string;
}

const DATABASE = "seckill";

// Flags that shape the files of a data directory: install-db and the server
// must agree on them, and they key the template cache. A small redo log makes
// the data directory 26 MB instead of 114 MB.
const STORAGE_FLAGS = ["--innodb-log-file-size=8M"];

const asRoot = process.getuid?.() === 0;

export async function startMariaDb(options: MariaDbOptions = {}): Promise<MariaDbServer> {
  const [mariadbd, installDb] = await Promise.all([
    ensureBinary("mariadbd", "mariadb-server"),
    ensureBinary("mariadb-install-db", "mariadb-server"),
  ]);
  return retryOnPortClash(async () => {
    const port = await freePort();
    const server = await startManaged(
      "mariadb",
      (dataDir) => ({
        what: `mariadbd on ${LOOPBACK}:${port}`,
        command: mariadbd,
        args: serverArgs(dataDir, port),
        isReady: () => answersSelectOne(port),
        readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
        afterReady: () => createDatabase(port),
      }),
      async (dataDir) => {
        const data = join(dataDir, "data");
        const source = options.freshInstall
          ? undefined
          : // No usable cache (e.g. another user's): fall back to installing.
            await pristineTemplate(mariadbd, installDb).catch(() => undefined);
        // coreutils cp: twice as fast as fs.cp here, and it keeps the event loop free.
        if (source) await execFileAsync("cp", ["-R", "--", source, data]);
        else await installDataDir(installDb, data);
      },
    );
    return mariaDbHandle(server, port);
  });
}

function serverArgs(dataDir: string, port: number): string[] {
  return [
    "--no-defaults", // must come first; ignores the machine's /etc/mysql config
    `--datadir=${join(dataDir, "data")}`,
    `--port=${port}`,
    `--bind-address=${LOOPBACK}`,
    `--socket=${join(dataDir, "mysql.sock")}`,
    `--pid-file=${join(dataDir, "mariadbd.pid")}`,
    `--log-error=${join(dataDir, "server.log")}`,
    "--skip-name-resolve",
    "--skip-log-bin",
    "--innodb-buffer-pool-size=64M",
    // Durability stays at the default (flush the redo log at every commit):
    // the tests kill this server and expect committed rows to survive.
    ...STORAGE_FLAGS,
    // Nothing to gain from warming a buffer pool that lives for one test file.
    "--innodb-buffer-pool-load-at-startup=OFF",
    "--innodb-buffer-pool-dump-at-shutdown=OFF",
    // The defaults are latin1 and the machine's time zone: make every machine alike.
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--default-time-zone=+00:00",
    ...(asRoot ? ["--user=root"] : []),
  ];
}

async function installDataDir(installDb: string, data: string): Promise<void> {
  const args = [
    "--no-defaults",
    `--datadir=${data}`,
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-log-bin",
    ...STORAGE_FLAGS,
    ...(asRoot ? ["--user=root"] : []),
  ];
  try {
    await execFileAsync(installDb, args, { maxBuffer: 4 * 1024 * 1024 });
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    const tail = `${stdout}\n${stderr}`.trim().split("\n").slice(-10).join("\n");
    throw new Error(`mariadb-install-db failed: ${(error as Error).message}\n${tail}`);
  }
}

// Bump when the way the template is made changes, so old caches are not reused.
const TEMPLATE_FORMAT = "2: install-db, sys schema dropped";
let template: Promise<string> | undefined;

/**
 * A data directory fresh from mariadb-install-db, made once per machine and
 * MariaDB version under os.tmpdir()/seckill-stack-cache/ and copied for each
 * server: copying takes ~0.07 s where install-db takes ~0.6 s, and many test
 * files start a server. Never served a client, so every copy is pristine.
 */
function pristineTemplate(mariadbd: string, installDb: string): Promise<string> {
  template ??= buildTemplate(mariadbd, installDb);
  template.catch(() => {
    template = undefined;
  });
  return template;
}

async function buildTemplate(mariadbd: string, installDb: string): Promise<string> {
  const { stdout: version } = await execFileAsync(mariadbd, ["--version"]);
  const key = createHash("sha256")
    .update([TEMPLATE_FORMAT, version.trim(), ...STORAGE_FLAGS, asRoot].join("\n"))
    .digest("hex")
    .slice(0, 16);
  const cacheDir = join(tmpdir(), `${STACK_DIR_PREFIX}cache`);
  const dir = join(cacheDir, `mariadb-${key}`);
  if (existsSync(dir)) return dir;
  // Build beside it and rename: other processes never see a half-made template.
  const building = `${dir}.building-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await mkdir(cacheDir, { recursive: true });
    await installDataDir(installDb, building);
    await dropSysSchema(mariadbd, building);
    await writeFile(join(building, "seckill-template-version"), `${version.trim()}\n`);
    await rename(building, dir);
  } catch (error) {
    await rm(building, { recursive: true, force: true });
    // Another process renamed its template into place first: use that one.
    if (!existsSync(dir)) throw error;
  }
  return dir;
}

/**
 * The sys schema is 100 view files of the 200 in a data directory, and creating
 * files is what copying spends its time on (~0.5 ms each here); nothing of ours
 * uses it. Dropped in bootstrap mode, as install-db itself runs the server.
 */
function dropSysSchema(mariadbd: string, data: string): Promise<void> {
  const args = [
    "--no-defaults",
    "--bootstrap",
    `--datadir=${data}`,
    "--skip-log-bin",
    ...STORAGE_FLAGS,
    ...(asRoot ? ["--user=root"] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(mariadbd, args, { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`mariadbd --bootstrap exited with ${code}: ${stderr.trim()}`));
    });
    child.stdin.end("DROP DATABASE IF EXISTS sys;\n");
  });
}

async function answersSelectOne(port: number): Promise<boolean> {
  const connection = await createConnection({
    host: LOOPBACK,
    port,
    user: "root",
    password: "",
    connectTimeout: 2000,
  });
  try {
    const [rows] = await connection.query("SELECT 1 AS one");
    return (rows as Array<{ one: number }>)[0]?.one === 1;
  } finally {
    connection.destroy();
  }
}

async function createDatabase(port: number): Promise<void> {
  const connection = await createConnection({ host: LOOPBACK, port, user: "root", password: "" });
  try {
    await connection.query(
      `CREATE DATABASE IF NOT EXISTS ${DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
    );
  } finally {
    await connection.end();
  }
}

function mariaDbHandle(server: ManagedServer, port: number): MariaDbServer {
  // Object.assign keeps the shared part's live `pid` getter (a spread would freeze it).
  return Object.assign(handleOf(server), {
    host: LOOPBACK,
    port,
    user: "root",
    password: "",
    database: DATABASE,
    uri: `mysql://root@${LOOPBACK}:${port}/${DATABASE}`,
    describe: () => `mariadbd      ${LOOPBACK}:${port}/${DATABASE}  pid ${server.pid}  user root`,
  } satisfies Omit<MariaDbServer, Exclude<keyof ServerHandle, "describe">>);
}
