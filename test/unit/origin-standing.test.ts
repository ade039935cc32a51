import { describe, expect, it } from "vitest";
import type { EnrollmentTokenRecord, RegistrationRecord } from "../../src/policy/model.js";
import { CredentialStanding } from "../../src/policy/origin-standing.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));

function token(id: string, revokedAt: Date | null = null): EnrollmentTokenRecord {
  return {
    id,
    tokenHash: Buffer.alloc(32),
    spiffeId: "spiffe://anchorage.test/web",
    dnsNames: [],
    maxTtlSeconds: 3600,
    expiresAt: new Date(NOW.getTime() - 1000),
    usesLeft: 0,
    createdBy: "apikey:admin",
    createdAt: NOW,
    revokedAt,
  };
}

const SPIFFE_ID = "spiffe://anchorage.test/web";
const registration = { id: "reg_live", spiffeId: SPIFFE_ID } as RegistrationRecord;
const tokens = new Map([
  ["tok_used", token("tok_used")],
  ["tok_revoked", token("tok_revoked", NOW)],
]);
const standing = new CredentialStanding({
  tokens: { get: async (id) => tokens.get(id) },
  registrations: { get: async (id) => (id === registration.id ? registration : undefined) },
  jwtIssuers: new Set(["https://issuer.test"]),
});

describe("CredentialStanding", async () => {
  it("lets a lineage renew while its token is merely expired or used up, its registration kept, its JWT issuer configured", async () => {
    expect(await standing.refusal({ kind: "token", tokenId: "tok_used", registrationId: "reg_live", maxTtlSeconds: 60 }, SPIFFE_ID)).toBeUndefined();
    expect(await standing.refusal({ kind: "jwt", issuer: "https://issuer.test", subject: "s", registrationId: null, maxTtlSeconds: 60 }, SPIFFE_ID)).toBeUndefined();
    expect(await standing.refusal({ kind: "system", maxTtlSeconds: 60 }, SPIFFE_ID)).toBeUndefined();
  });

  it("names why a lineage may no longer renew", async () => {
    expect(await standing.refusal({ kind: "token", tokenId: "tok_revoked", registrationId: null, maxTtlSeconds: 60 }, SPIFFE_ID)).toMatch(/tok_revoked .*was revoked/);
    expect(await standing.refusal({ kind: "token", tokenId: "tok_gone", registrationId: null, maxTtlSeconds: 60 }, SPIFFE_ID)).toMatch(/no longer exists/);
    expect(await standing.refusal({ kind: "token", tokenId: "tok_used", registrationId: "reg_gone", maxTtlSeconds: 60 }, SPIFFE_ID)).toMatch(/registration reg_gone .*deleted/);
    expect(await standing.refusal({ kind: "jwt", issuer: "https://removed.test", subject: "s", registrationId: null, maxTtlSeconds: 60 }, SPIFFE_ID)).toMatch(
      /JWT issuer "https:\/\/removed.test" .*no longer configured/,
    );
    expect(await standing.refusal({ kind: "jwt", issuer: "https://issuer.test", subject: "s", registrationId: "reg_gone", maxTtlSeconds: 60 }, SPIFFE_ID)).toMatch(/deleted/);
    expect(await standing.refusal({ kind: "token", tokenId: "tok_used", registrationId: "reg_live", maxTtlSeconds: 60 }, "spiffe://anchorage.test/other")).toMatch(
      /reg_live .*is now for spiffe:\/\/anchorage.test\/web/,
    );
  });
});
