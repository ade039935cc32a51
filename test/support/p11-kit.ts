/**
 * A network HSM stand-in for tests: `p11-kit server` exporting one SoftHSM token over a Unix socket. A node
 * loads p11-kit's client module (`p11-kit-client.so`) as its PKCS#11 module, with P11_KIT_SERVER_ADDRESS in
 * its environment naming the socket; the token's files stay with the server, as a real network HSM's would.
 *
 * The server forks one `p11-kit-remote` per client connection, each with its own SoftHSM instance over the
 * same token files. Those children outlive the server process, so the server is started as the leader of a
 * process group of its own and stopped by signalling that group: an outage then cuts every node off, as
 * losing a network HSM would.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { arch, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "vitest";
import type { SoftHsm } from "./softhsm.js";

const CLIENT_MODULE = "p11-kit-client.so";
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;

export interface P11KitServer {
  /** The value for P11_KIT_SERVER_ADDRESS in a client's environment, e.g. `unix:path=/tmp/.../pkcs11.sock`. */
  readonly address: string;
  /** p11-kit's client module: the PKCS#11 module a node loads to reach the server. */
  readonly clientModulePath: string;
  /** PID of the running server (the leader of its process group), undefined while it is down. */
  readonly pid: number | undefined;
  /** SIGKILLs the server and every connection it serves, as a crash or a network cut would; the socket path stays. */
  kill(): Promise<void>;
  /** Starts a new server on the same socket after `kill()`, and waits until it accepts connections. */
  restart(): Promise<void>;
  /** Stops the server (SIGTERM, then SIGKILL) with its connections and removes the scratch folder. */
  stop(): Promise<void>;
}

/** Servers still running when the test process exits are killed, so a crashed test leaves none behind. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const server of running) signalGroup(server, "SIGKILL");
});

/**
 * Where p11-kit's client module is: in the `pkcs11` folder of the system's multiarch library folder on
 * Debian and Ubuntu (package p11-kit-modules), of /usr/lib64 on Fedora. `pkg-config` names the folder when
 * p11-kit's development files are installed; otherwise the usual folders are searched. Undefined when absent.
 */
export function p11KitClientModulePath(): string | undefined {
  const folders: string[] = [];
  const fromPkgConfig = spawnSync("pkg-config", ["--variable=p11_module_path", "p11-kit-1"], { encoding: "utf8" });
  if (fromPkgConfig.status === 0 && fromPkgConfig.stdout.trim() !== "") folders.push(fromPkgConfig.stdout.trim());
  const multiarch: Record<string, string> = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu", arm: "arm-linux-gnueabihf" };
  if (multiarch[arch()] !== undefined) folders.push(`/usr/lib/${multiarch[arch()]}/pkcs11`);
  folders.push("/usr/lib64/pkcs11", "/usr/lib/pkcs11");
  try {
    for (const entry of readdirSync("/usr/lib", { withFileTypes: true })) {
      if (entry.isDirectory() && entry.name.endsWith("-linux-gnu")) folders.push(`/usr/lib/${entry.name}/pkcs11`);
    }
  } catch {
    // No /usr/lib to search: the folders above are all we can try.
  }
  return folders.map((folder) => join(folder, CLIENT_MODULE)).find((path) => existsSync(path));
}

/** Why a p11-kit server cannot be used here, or undefined when it can. */
export function p11KitUnavailableReason(): string | undefined {
  const missing: string[] = [];
  // `p11-kit server --help` exits 2 after printing its usage, and fails to spawn when p11-kit is missing.
  const server = spawnSync("p11-kit", ["server", "--help"], { encoding: "utf8" });
  if (server.error !== undefined || !`${server.stdout}${server.stderr}`.includes("--provider")) {
    missing.push("p11-kit's server (package p11-kit)");
  }
  if (p11KitClientModulePath() === undefined) missing.push(`p11-kit's client module ${CLIENT_MODULE} (package p11-kit-modules)`);
  if (missing.length === 0) return undefined;
  return `p11-kit is not installed (missing ${missing.join(" and ")}; run scripts/ensure-system-deps.sh)`;
}

/**
 * `p11KitUnavailableReason` for a test file, with the CI rule applied: when p11-kit is missing and `CI` is set,
 * a failing test saying so is registered (integration tests never skip in CI). Returns the reason, for
 * `describe.skipIf` outside CI.
 */
export function requireP11Kit(): string | undefined {
  const reason = p11KitUnavailableReason();
  if (reason !== undefined && process.env.CI) {
    describe("integration prerequisites in CI", () => {
      it("include p11-kit", () => {
        throw new Error(`CI must not skip integration tests: ${reason}`);
      });
    });
  }
  return reason;
}

/**
 * Starts `p11-kit server` in the foreground for the token labelled `tokenLabel` of `hsm` (SoftHSM made by
 * `createSoftHsm`), on a socket in a new scratch folder, and waits until the socket accepts connections.
 */
export async function startP11KitServer(hsm: SoftHsm, tokenLabel: string): Promise<P11KitServer> {
  const reason = p11KitUnavailableReason();
  if (reason !== undefined) throw new Error(reason);
  const clientModulePath = p11KitClientModulePath() as string;

  const dir = await mkdtemp(join(tmpdir(), "anchorage-p11-kit-"));
  const socketPath = join(dir, "pkcs11.sock");
  let server: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const child = spawn(
      "p11-kit",
      ["server", "--foreground", "--provider", hsm.modulePath, "--name", socketPath, `pkcs11:token=${encodeURIComponent(tokenLabel)}`],
      {
        // SoftHSM in the server's connection handlers reads this configuration, whatever the test process has.
        env: { ...process.env, SOFTHSM2_CONF: hsm.confPath },
        stdio: ["ignore", "pipe", "pipe"],
        // Its own process group, so that stopping it reaches the per-connection children too.
        detached: true,
      },
    );
    running.add(child);
    let output = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.once("exit", () => running.delete(child));
    server = child;
    try {
      await waitUntilAccepting(socketPath, child, () => output);
    } catch (error) {
      await stopGroup(child, "SIGKILL");
      server = undefined;
      throw error;
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const child = server;
    server = undefined;
    if (child !== undefined) await stopGroup(child, signal);
  };

  try {
    await launch();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    address: `unix:path=${socketPath}`,
    clientModulePath,
    get pid() {
      return server?.pid;
    },
    kill: () => halt("SIGKILL"),
    async restart() {
      if (server !== undefined) throw new Error("the p11-kit server is still running");
      await launch();
    },
    async stop() {
      await halt("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Retries connecting to the socket until one connection succeeds, the server exits or time runs out. */
async function waitUntilAccepting(socketPath: string, server: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`p11-kit server exited (${server.exitCode ?? server.signalCode}) before accepting connections:\n${output()}`);
    }
    if (await accepts(socketPath)) return;
    if (Date.now() > deadline) {
      throw new Error(`p11-kit server did not accept connections on ${socketPath} within ${STARTUP_TIMEOUT_MS} ms:\n${output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Signals the server's process group (its PID), then waits for the server to exit, escalating to SIGKILL. */
async function stopGroup(server: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) {
    // The leader is gone; connection handlers it forked may still be running in its group.
    signalGroup(server, "SIGKILL");
    return;
  }
  const exited = once(server, "exit");
  signalGroup(server, signal);
  const killer = setTimeout(() => signalGroup(server, "SIGKILL"), STOP_GRACE_MS);
  try {
    await exited;
  } finally {
    clearTimeout(killer);
  }
  // SIGTERM reaches the handlers too, but one busy in the module may linger: make sure none outlives the test.
  if (signal !== "SIGKILL") signalGroup(server, "SIGKILL");
}

function signalGroup(server: ChildProcess, signal: NodeJS.Signals): void {
  if (server.pid === undefined) return;
  try {
    process.kill(-server.pid, signal);
  } catch {
    // The whole group has exited already.
  }
}
