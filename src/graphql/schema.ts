import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const SCHEMA_DIR = fileURLToPath(new URL("../../schema/", import.meta.url));

/** The SDL contract, read from schema/*.graphql (the same files codegen reads). */
export function loadSchemaSdl(): string {
  return readdirSync(SCHEMA_DIR)
    .filter((file) => file.endsWith(".graphql"))
    .sort()
    .map((file) => readFileSync(join(SCHEMA_DIR, file), "utf8"))
    .join("\n");
}
