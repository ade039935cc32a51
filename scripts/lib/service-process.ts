/** Starts the service as a child process on a fresh data folder, for benchmarks. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly dataDir: string;
  readonly graphqlPort: number;
  readonly httpPort: number;
  readonly rootPem: string;
  readonly adminKey: string;
  stop(): Promise<void>;
}

/**
 * Starts the service on a fresh data folder. With `joining`, the new process is another node of that one's CA:
 * the same database (pass its ANCHORAGE_DATABASE_URL in `env`) and the same SoftHSM token, no bootstrap.
 */
export async function startServiceProcess(env: Record<string, string> = {}, joining?: ServiceProcess): Promise<ServiceProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "anchorage-bench-"));
  const nodeEnv: Record<string, string> = joining
    ? {
        ANCHORAGE_BOOTSTRAP: "none",
        SOFTHSM2_CONF: join(joining.dataDir, "softhsm2.conf"),
        ANCHORAGE_HSM_PIN: readFileSync(join(joining.dataDir, "secrets", "online-token.pin"), "utf8").trim(),
      }
    : {};
  // ANCHORAGE_BENCH_NODE_ARGS passes flags to the service's node only (e.g. --cpu-prof for profiling).
  const nodeArgs = (process.env.ANCHORAGE_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "src/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, ANCHORAGE_DATA_DIR: dataDir, ANCHORAGE_GRAPHQL_PORT: "0", ANCHORAGE_HTTP_PORT: "0", ANCHORAGE_LOG_LEVEL: "warn", ...nodeEnv, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ports = await new Promise<{ graphqlPort: number; httpPort: number }>((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error("the service did not start within 90 s")), 90_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split("\n")) {
        if (line.includes('"msg":"listening"')) {
          clearTimeout(timer);
          const parsed = JSON.parse(line) as { graphqlPort: number; httpPort: number };
          resolve(parsed);
        }
      }
      buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
    });
    child.once("exit", (code) => reject(new Error(`the service exited with ${code} before listening`)));
  });
  child.stdout?.resume();
  return {
    child,
    dataDir,
    ...ports,
    rootPem: joining?.rootPem ?? readFileSync(join(dataDir, "root.pem"), "utf8"),
    adminKey: joining?.adminKey ?? readFileSync(join(dataDir, "admin-api-key"), "utf8").trim(),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((resolve) => child.once("exit", resolve));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
