/**
 * Password hashing with scrypt (memory-hard, node:crypto, runs on the libuv
 * pool so the event loop stays free) and the username / password rules.
 *
 * Stored form (PHC string format), parameters and salt travel with the hash so
 * the cost can be raised later: old hashes still verify, and `needsRehash`
 * tells the login path to store a stronger one.
 *
 *   $scrypt$ln=15,r=8,p=1$<salt, base64>$<hash, base64>
 *
 * Cost on the 2-core dev box (AMD EPYC, Node 24), one hash: ln=14 (16 MiB)
 * ~50 ms, ln=15 (32 MiB) ~90 ms, ln=16 (64 MiB) ~180 ms. Default ln=15, r=8, p=1.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  logN: number;
  /** Block size. */
  r: number;
  /** Parallelism. */
  p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { logN: 15, r: 8, p: 1 };

const SALT_BYTES = 16;
const HASH_BYTES = 32;
// Bounds for parameters read back from a stored hash (guards against a row that
// would make one verification take minutes or gigabytes).
const MAX_LOG_N = 22;
const MAX_R = 32;
const MAX_P = 16;

interface ParsedHash {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

const b64 = (buf: Buffer) => buf.toString("base64").replace(/=+$/, "");

export function encodeHash(params: ScryptParams, salt: Buffer, hash: Buffer): string {
  return `$scrypt$ln=${params.logN},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

export function parseHash(stored: string): ParsedHash | undefined {
  const m = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(stored);
  if (!m) return undefined;
  const params = { logN: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (params.logN < 1 || params.logN > MAX_LOG_N) return undefined;
  if (params.r < 1 || params.r > MAX_R || params.p < 1 || params.p > MAX_P) return undefined;
  const salt = Buffer.from(m[4]!, "base64");
  const hash = Buffer.from(m[5]!, "base64");
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { params, salt, hash };
}

function scryptAsync(
  password: string,
  salt: Buffer,
  length: number,
  { logN, r, p }: ScryptParams,
): Promise<Buffer> {
  const N = 2 ** logN;
  return new Promise((resolve, reject) =>
    scrypt(
      // NFKC so that the same password typed on two keyboards hashes the same (NIST 800-63B).
      password.normalize("NFKC"),
      salt,
      length,
      { N, r, p, maxmem: 256 * N * r + 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    ),
  );
}

export interface PasswordHasherOptions {
  params?: ScryptParams;
  /**
   * Hashes queued or running at once beyond which new ones are refused with
   * RESOURCE_EXHAUSTED (admission control: a login storm must not build an
   * unbounded queue of 32 MiB jobs).
   */
  maxPending?: number;
  /** Told the duration of every hash, for the latency histogram. */
  observe?: (op: "hash" | "verify", seconds: number) => void;
}

export class PasswordHasher {
  readonly params: ScryptParams;
  private readonly maxPending: number;
  private pending = 0;
  private dummy: Promise<string> | undefined;

  constructor(private readonly opts: PasswordHasherOptions = {}) {
    this.params = opts.params ?? DEFAULT_SCRYPT;
    this.maxPending = opts.maxPending ?? 64;
  }

  private async run<T>(op: "hash" | "verify", fn: () => Promise<T>): Promise<T> {
    if (this.pending >= this.maxPending) {
      throw new ConnectError(
        "too many password checks in progress; retry in a moment",
        Code.ResourceExhausted,
        { "retry-after": "1" },
      );
    }
    this.pending++;
    const started = performance.now();
    try {
      return await fn();
    } finally {
      this.pending--;
      this.opts.observe?.(op, (performance.now() - started) / 1000);
    }
  }

  /** A new salted hash of `password` with the current parameters. */
  hash(password: string): Promise<string> {
    return this.run("hash", async () => {
      const salt = randomBytes(SALT_BYTES);
      const hash = await scryptAsync(password, salt, HASH_BYTES, this.params);
      return encodeHash(this.params, salt, hash);
    });
  }

  /** True when `password` matches `stored`; false for a mismatch or an unreadable hash. */
  verify(password: string, stored: string): Promise<boolean> {
    return this.run("verify", async () => {
      const parsed = parseHash(stored);
      if (!parsed) return false;
      const candidate = await scryptAsync(password, parsed.salt, parsed.hash.length, parsed.params);
      return timingSafeEqual(candidate, parsed.hash);
    });
  }

  /**
   * Spends the time of one verification and returns false: the answer for an
   * unknown username takes as long as for a wrong password.
   */
  async verifyNothing(password: string): Promise<false> {
    this.dummy ??= this.hash("not-a-real-password-0123456789");
    await this.verify(password, await this.dummy);
    return false;
  }

  /** True when `stored` was made with weaker parameters than the current ones. */
  needsRehash(stored: string): boolean {
    const parsed = parseHash(stored);
    if (!parsed) return true;
    const { logN, r, p } = parsed.params;
    return logN < this.params.logN || r < this.params.r || p < this.params.p;
  }
}

// ---------------------------------------------------------------------------
// Username and password rules

export const USERNAME_MIN = 3;
export const USERNAME_MAX = 64;
export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;

const USERNAME_RE = /^[a-z0-9][a-z0-9._-]*$/;

/** Usernames are case-insensitive: stored and compared in lower case. */
export function normalizeUsername(raw: string): string {
  return raw.toLowerCase();
}

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

/** Throws INVALID_ARGUMENT with the rule that a (normalized) username breaks. */
export function validateUsername(username: string): void {
  if (username === "") throw invalid("username is required");
  if (username.length < USERNAME_MIN || username.length > USERNAME_MAX) {
    throw invalid(`username must be ${USERNAME_MIN} to ${USERNAME_MAX} characters long`);
  }
  if (!USERNAME_RE.test(username)) {
    throw invalid(
      "username may contain only letters, digits, '.', '_' and '-', and must start with a letter or a digit",
    );
  }
}

// A few passwords every cracking list starts with; the length rule does the rest
// (NIST 800-63B: length and a blocklist, no composition rules).
const COMMON_PASSWORDS = new Set([
  "password",
  "password1",
  "password123",
  "12345678",
  "123456789",
  "1234567890",
  "qwertyuiop",
  "qwerty123",
  "11111111",
  "00000000",
  "iloveyou",
  "sunshine",
  "princess",
  "football",
  "baseball",
  "welcome1",
  "abcdefgh",
  "letmein1",
  "passw0rd",
  "admin123",
]);

/** Throws INVALID_ARGUMENT when a new password is too weak or too long. */
export function validatePassword(password: string, username = ""): void {
  if (password === "") throw invalid("password is required");
  const length = [...password].length;
  if (length < PASSWORD_MIN) {
    throw invalid(`password must be at least ${PASSWORD_MIN} characters long`);
  }
  if (length > PASSWORD_MAX) {
    throw invalid(`password must be at most ${PASSWORD_MAX} characters long`);
  }
  if (username !== "" && password.toLowerCase() === username.toLowerCase()) {
    throw invalid("password must not be the username");
  }
  if (COMMON_PASSWORDS.has(password.toLowerCase()) || /^(.)\1+$/.test(password)) {
    throw invalid("password is too common; choose a longer or less predictable one");
  }
}
