import type { ApiKeyRole } from "./model.js";

/** Who is calling, as established by the transport (bearer API key, or nobody). */
export type Principal =
  | { readonly kind: "apiKey"; readonly id: string; readonly name: string; readonly role: ApiKeyRole }
  | { readonly kind: "anonymous" };

export const ANONYMOUS: Principal = Object.freeze({ kind: "anonymous" });

export function actorOf(principal: Principal): string {
  return principal.kind === "apiKey" ? `apikey:${principal.id}` : "anonymous";
}
