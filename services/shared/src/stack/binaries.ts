/**
 * Finding the server binaries of the local stack, and installing their Debian
 * package when we are allowed to (root on Debian/Ubuntu), so that a fresh CI
 * machine needs nothing but Node and npm.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";

/** The Debian packages that provide every binary the stack starts. */
export const STACK_PACKAGES = ["redis-server", "mariadb-server", "etcd-server"] as const;

/** The one command that makes every stack binary available. */
export const INSTALL_HINT = `sudo apt-get install -y ${STACK_PACKAGES.join(" ")}`;

// Daemons live in sbin directories, which a non-root PATH often lacks.
const EXTRA_DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];
const APT_GET = "/usr/bin/apt-get";

/** Runs one command to completion; rejects with its output tail when it fails. */
export type CommandRunner = (command: string, args: string[]) => Promise<void>;

export interface EnsureBinaryOptions {
  /** May we apt-get the package? Default: only as root with apt-get present. */
  allowInstall?: boolean;
  /**
   * The sentence that ends the error: default, the command installing every
   * stack server; optional servers (prometheus for --observe) name their own.
   */
  installHint?: string;
  /** Replaces the real apt-get runs, for tests. */
  runCommand?: CommandRunner;
}

const found = new Map<string, string>();
// `apt-get update` runs once per process (per runner, so a test's fake one does not count).
const aptUpdated = new WeakMap<CommandRunner, Promise<void>>();
// apt and dpkg hold one lock: installs requested in parallel must take turns.
let installQueue: Promise<unknown> = Promise.resolve();

/**
 * Returns the absolute path of `binary`, installing `debPackage` first when it
 * is missing and installing is allowed. Otherwise throws an Error that says
 * exactly what to install.
 */
export async function ensureBinary(
  binary: string,
  debPackage: string,
  options: EnsureBinaryOptions = {},
): Promise<string> {
  const cached = found.get(binary);
  if (cached) return cached;
  const existing = findBinary(binary);
  if (existing) {
    found.set(binary, existing);
    return existing;
  }
  const hint = options.installHint ?? `Install the local stack's servers with: ${INSTALL_HINT}`;
  const allowInstall = options.allowInstall ?? canInstallPackages();
  if (!allowInstall) {
    throw new Error(
      `${binary} not found (searched PATH and ${EXTRA_DIRS.join(", ")}); it comes with the ` +
        `Debian package ${debPackage}. ${hint}`,
    );
  }
  const run = options.runCommand ?? runCommand;
  const install = installQueue.then(() => installPackage(debPackage, run));
  installQueue = install.catch(() => undefined);
  try {
    await install;
  } catch (error) {
    throw new Error(
      `${binary} not found and installing the Debian package ${debPackage} failed: ` +
        `${(error as Error).message}\n${hint}`,
    );
  }
  const installed = findBinary(binary);
  if (!installed) {
    throw new Error(
      `installed the Debian package ${debPackage} but ${binary} is still not found. ${hint}`,
    );
  }
  found.set(binary, installed);
  return installed;
}

/** The absolute path of an executable file named `binary`, or undefined. */
export function findBinary(binary: string): string | undefined {
  if (binary.includes("/")) return isExecutableFile(binary) ? binary : undefined;
  const pathDirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const dir of [...pathDirs, ...EXTRA_DIRS]) {
    const candidate = join(dir, binary);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function canInstallPackages(): boolean {
  return process.getuid?.() === 0 && isExecutableFile(APT_GET);
}

async function installPackage(debPackage: string, run: CommandRunner): Promise<void> {
  // Waiting for the dpkg lock covers another test process installing at the same time.
  const lockWait = ["-o", "DPkg::Lock::Timeout=300"];
  let updated = aptUpdated.get(run);
  if (!updated) {
    updated = run(APT_GET, [...lockWait, "update"]);
    aptUpdated.set(run, updated);
    updated.catch(() => aptUpdated.delete(run)); // let a later call try again
  }
  await updated;
  process.stderr.write(`stack: installing the Debian package ${debPackage} (apt-get)...\n`);
  await run(APT_GET, [...lockWait, "install", "-y", debPackage]);
}

function runCommand(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    let output = "";
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else {
        const tail = output.trim().split("\n").slice(-5).join("\n");
        reject(new Error(`${command} ${args.join(" ")} exited with ${code ?? signal}: ${tail}`));
      }
    });
  });
}
