/** A private single-member etcd on loopback ports, for tests and the demo. */
import { get } from "node:http";
import { join } from "node:path";
import { ensureBinary } from "./binaries.ts";
import {
  handleOf,
  type ManagedServer,
  retryOnPortClash,
  type ServerHandle,
  startManaged,
} from "./managed-server.ts";
import { freePort, LOOPBACK } from "./net.ts";

export interface EtcdOptions {
  readyTimeoutMs?: number;
}

export interface EtcdServer extends ServerHandle {
  /** [http://127.0.0.1:<clientPort>], ready for `new Etcd3({ hosts: endpoints })`. */
  readonly endpoints: string[];
  readonly clientPort: number;
  readonly peerPort: number;
}

// etcd refuses to start on architectures it does not officially support
// unless told which one it is, in Go's naming.
const GO_ARCH: Partial<Record<string, string>> = {
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loong64",
  mips: "mips",
  mipsel: "mipsle",
};

export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  const binary = await ensureBinary("etcd", "etcd-server");
  return retryOnPortClash(async () => {
    const [clientPort, peerPort] = await Promise.all([freePort(), freePort()]);
    const clientUrl = `http://${LOOPBACK}:${clientPort}`;
    const peerUrl = `http://${LOOPBACK}:${peerPort}`;
    const server = await startManaged("etcd", (dataDir) => ({
      what: `etcd on ${clientUrl}`,
      command: binary,
      args: [
        "--name=stack",
        `--data-dir=${join(dataDir, "data")}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=stack=${peerUrl}`,
        // Only read when the data directory is empty, so restart() reuses the data.
        "--initial-cluster-state=new",
        // A lone member still waits one election timeout before leading: the
        // default 1 s made a restart take 1.3 s, these make it 0.25 s.
        "--heartbeat-interval=25",
        "--election-timeout=250",
        "--logger=zap", // 3.4's default logger is deprecated and says so
        "--log-outputs=stderr",
      ],
      env: etcdEnv(),
      isReady: () => isHealthy(clientUrl),
      readyTimeoutMs: options.readyTimeoutMs ?? 15_000,
    }));
    return etcdHandle(server, clientPort, peerPort);
  });
}

/** The environment without ETCD_* settings of the caller, which etcd would also read. */
function etcdEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("ETCD_")) env[name] = value;
  }
  const goArch = GO_ARCH[process.arch];
  if (goArch) env.ETCD_UNSUPPORTED_ARCH = goArch;
  return env;
}

/** GET /health answers {"health":"true"} once the member has a leader and serves reads. */
function isHealthy(clientUrl: string): Promise<boolean> {
  // node:http without keep-alive: fetch would pool a socket per port we probe.
  return new Promise((resolve, reject) => {
    const request = get(`${clientUrl}/health`, { agent: false, timeout: 1000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        body += chunk;
      });
      response.on("end", () => {
        try {
          resolve((JSON.parse(body) as { health?: string }).health === "true");
        } catch {
          reject(new Error(`/health answered ${response.statusCode}: ${body.slice(0, 200)}`));
        }
      });
    });
    request.on("timeout", () => request.destroy(new Error("/health timed out")));
    request.on("error", reject);
  });
}

function etcdHandle(server: ManagedServer, clientPort: number, peerPort: number): EtcdServer {
  const endpoint = `http://${LOOPBACK}:${clientPort}`;
  // Object.assign keeps the shared part's live `pid` getter (a spread would freeze it).
  return Object.assign(handleOf(server), {
    endpoints: [endpoint],
    clientPort,
    peerPort,
    describe: () => `etcd          ${endpoint}  pid ${server.pid}  peer port ${peerPort}`,
  });
}
