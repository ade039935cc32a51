import { createHash, randomBytes } from "node:crypto";

/**
 * Bearer secrets (API keys, enrollment tokens): a readable prefix that says what the secret is for, then
 * 256 bits of CSPRNG output in base64url. The prefix lets secret scanners and people recognise a leaked one.
 */
export function generateSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

/** What we store instead of a secret. A fast hash is right here: the input has 256 bits of entropy. */
export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** A short, random, URL-safe identifier for records (not a secret). */
export function generateId(prefix: string): string {
  return `${prefix}_${randomBytes(9).toString("base64url")}`;
}
