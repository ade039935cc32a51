import { execFileSync } from "node:child_process";

/**
 * The machine's `openssl speed -seconds 2 ecdsap256` figures, printed beside every benchmark so that results
 * taken on different (or differently loaded) machines can be compared.
 */
export function opensslEcdsaP256Speed(): string {
  const output = execFileSync("openssl", ["speed", "-seconds", "2", "ecdsap256"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const fields = output.split("\n").find((line) => /^\s*256 bits ecdsa/.test(line))?.trim().split(/\s+/) ?? [];
  return `${fields.at(-2) ?? "?"} sign/s, ${fields.at(-1) ?? "?"} verify/s`;
}
