/**
 * The policy repositories (API keys, enrollment tokens, registrations), the same tests on every storage
 * engine: records read back field for field, the first revocation time stands, a revoked token has no uses
 * left, and a second registration of one JWT issuer and subject is refused with the same typed error
 * whichever engine (and however many nodes) try it, leaving the stored one untouched.
 */
import { createHash, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadUserInputError } from "../../src/common/errors.js";
import type { ApiKeyRecord, EnrollmentTokenRecord, RegistrationRecord } from "../../src/policy/model.js";
import { SqliteApiKeyRepository, SqliteEnrollmentTokenRepository, SqliteRegistrationRepository } from "../../src/store/policy-repositories.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { PostgresApiKeyRepository, PostgresEnrollmentTokenRepository, PostgresRegistrationRepository } from "../../src/store/postgres/policy-repositories.js";
import { closeHandle, openSecondHandle, type EngineHandle } from "../support/contract-store.js";
import { STORE_ENGINES, type StoreEngine } from "../support/store-engines.js";

const NOW = new Date("2026-03-01T12:00:00.000Z");
const later = (seconds: number): Date => new Date(NOW.getTime() + seconds * 1000);
const hashOf = (secret: string): Buffer => createHash("sha256").update(secret).digest();

interface PolicyRepositories {
  apiKeys: SqliteApiKeyRepository | PostgresApiKeyRepository;
  tokens: SqliteEnrollmentTokenRepository | PostgresEnrollmentTokenRepository;
  registrations: SqliteRegistrationRepository | PostgresRegistrationRepository;
}

function repositoriesOf(db: EngineHandle): PolicyRepositories {
  return db instanceof PostgresDatabase
    ? { apiKeys: new PostgresApiKeyRepository(db), tokens: new PostgresEnrollmentTokenRepository(db), registrations: new PostgresRegistrationRepository(db) }
    : { apiKeys: new SqliteApiKeyRepository(db), tokens: new SqliteEnrollmentTokenRepository(db), registrations: new SqliteRegistrationRepository(db) };
}

function apiKey(name: string, overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return { id: randomUUID(), name, role: "ADMIN", keyHash: hashOf(`key-${name}`), createdAt: NOW, revokedAt: null, expiresAt: null, ...overrides };
}

function token(name: string, overrides: Partial<EnrollmentTokenRecord> = {}): EnrollmentTokenRecord {
  return {
    id: randomUUID(),
    tokenHash: hashOf(`token-${name}`),
    spiffeId: `spiffe://anchorage.test/ns/default/sa/${name}`,
    dnsNames: [`${name}.default.svc`, `${name}.example.test`],
    maxTtlSeconds: 3600,
    expiresAt: later(86_400),
    usesLeft: 3,
    createdBy: "apikey:admin",
    createdAt: NOW,
    registrationId: null,
    revokedAt: null,
    ...overrides,
  };
}

function registration(name: string, overrides: Partial<RegistrationRecord> = {}): RegistrationRecord {
  return {
    id: randomUUID(),
    spiffeId: `spiffe://anchorage.test/ns/default/sa/${name}`,
    dnsNames: [`${name}.default.svc`],
    maxTtlSeconds: 7200,
    jwtIssuer: "https://issuer.example.test",
    jwtSubject: `system:serviceaccount:default:${name}`,
    createdBy: "apikey:admin",
    createdAt: NOW,
    updatedAt: NOW,
    ...overrides,
  };
}

for (const factory of STORE_ENGINES) {
  describe.skipIf(!factory.available)(`policy repositories on ${factory.kind}`, () => {
    let engine: StoreEngine;
    let other: EngineHandle;
    let repositories: PolicyRepositories;
    let otherNode: PolicyRepositories;

    beforeAll(async () => {
      engine = await factory.open();
      other = await openSecondHandle(engine);
      repositories = repositoriesOf(engine.db);
      otherNode = repositoriesOf(other);
    });

    afterAll(async () => {
      if (other) await closeHandle(other);
      await engine?.close();
    });

    describe("API keys", () => {
      it("stores keys with and without an expiry and finds them by id and by hash", async () => {
        const { apiKeys } = repositories;
        const lasting = apiKey("lasting", { createdAt: NOW });
        const expiring = apiKey("expiring", { role: "AUDITOR", createdAt: later(1), expiresAt: later(30 * 86_400) });
        await apiKeys.insert(lasting);
        await apiKeys.insert(expiring);
        expect(await apiKeys.get(lasting.id)).toEqual(lasting);
        expect(await apiKeys.get(expiring.id)).toEqual(expiring);
        expect((await apiKeys.get(expiring.id))?.expiresAt).toEqual(later(30 * 86_400));
        expect((await apiKeys.get(lasting.id))?.expiresAt).toBeNull();
        expect(await apiKeys.findByHash(hashOf("key-expiring"))).toEqual(expiring);
        expect(await apiKeys.findByHash(hashOf("no such key"))).toBeUndefined();
        expect(await apiKeys.get("missing")).toBeUndefined();
        expect((await apiKeys.list()).map((key) => key.name)).toEqual(["lasting", "expiring"]);
        expect(await apiKeys.count()).toBe(2);
      });

      it("keeps the first revocation time of a key", async () => {
        const { apiKeys } = repositories;
        const key = apiKey("revoked", { createdAt: later(2) });
        await apiKeys.insert(key);
        await apiKeys.revoke(key.id, later(100));
        await otherNode.apiKeys.revoke(key.id, later(200));
        expect((await apiKeys.get(key.id))?.revokedAt).toEqual(later(100));
        // Revoking a key that does not exist changes nothing and does not throw.
        await apiKeys.revoke("missing", later(300));
        expect(await apiKeys.count()).toBe(3);
      });

      it("refuses a second key with the same hash", async () => {
        await expect(Promise.resolve().then(() => repositories.apiKeys.insert(apiKey("lasting")))).rejects.toThrow();
        expect(await repositories.apiKeys.count()).toBe(3);
      });
    });

    describe("enrollment tokens", () => {
      it("stores a token and finds it by id and by hash, DNS names in order", async () => {
        const { tokens } = repositories;
        const record = token("web");
        await tokens.insert(record);
        expect(await tokens.get(record.id)).toEqual(record);
        expect(await tokens.findByHash(hashOf("token-web"))).toEqual(record);
        expect(await tokens.findByHash(hashOf("token-nobody"))).toBeUndefined();
        const fromRegistration = token("db", { registrationId: "registration-1", dnsNames: [] });
        await tokens.insert(fromRegistration);
        expect(await tokens.get(fromRegistration.id)).toEqual(fromRegistration);
      });

      it("revokes a token: every use taken away, the count of uses it had returned, the first revocation time kept", async () => {
        const { tokens } = repositories;
        const record = token("revoked", { usesLeft: 5 });
        await tokens.insert(record);
        expect(await tokens.revoke(record.id, later(10))).toBe(5);
        expect(await tokens.get(record.id)).toEqual({ ...record, usesLeft: 0, revokedAt: later(10) });
        expect(await otherNode.tokens.revoke(record.id, later(20))).toBe(0);
        expect((await tokens.get(record.id))?.revokedAt).toEqual(later(10));
        expect(await tokens.revoke("missing", later(30))).toBe(0);
      });

      it("counts every use exactly once when two nodes revoke the same token at once", async () => {
        const record = token("racing-revocation", { usesLeft: 7 });
        await repositories.tokens.insert(record);
        const taken = await Promise.all([repositories.tokens.revoke(record.id, later(40)), otherNode.tokens.revoke(record.id, later(41))]);
        expect(taken.sort()).toEqual([0, 7]);
        expect((await repositories.tokens.get(record.id))?.usesLeft).toBe(0);
      });
    });

    describe("registrations", () => {
      it("stores, finds by JWT subject, updates and deletes a registration", async () => {
        const { registrations } = repositories;
        const record = registration("api");
        await registrations.insert(record);
        expect(await registrations.get(record.id)).toEqual(record);
        expect(await registrations.findByJwt("https://issuer.example.test", "system:serviceaccount:default:api")).toEqual(record);
        expect(await registrations.findByJwt("https://other.example.test", "system:serviceaccount:default:api")).toBeUndefined();

        const updated: RegistrationRecord = { ...record, dnsNames: ["api.example.test", "api.default.svc"], maxTtlSeconds: 600, updatedAt: later(5) };
        await registrations.update(updated);
        expect(await registrations.get(record.id)).toEqual(updated);

        expect(await registrations.delete(record.id)).toBe(true);
        expect(await registrations.delete(record.id)).toBe(false);
        expect(await registrations.get(record.id)).toBeUndefined();
      });

      it("refuses a second registration of one JWT issuer and subject as bad input, and keeps the first", async () => {
        const { registrations } = repositories;
        const first = registration("unique");
        await registrations.insert(first);
        const second = registration("unique", { spiffeId: "spiffe://anchorage.test/ns/default/sa/impostor" });
        const refusal = await Promise.resolve()
          .then(() => registrations.insert(second))
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        expect(refusal).toBeInstanceOf(BadUserInputError);
        expect((refusal as BadUserInputError).code).toBe("BAD_USER_INPUT");
        expect((refusal as Error).message).toMatch(/already maps JWT subject/);
        expect(await registrations.get(second.id)).toBeUndefined();
        expect(await registrations.findByJwt(first.jwtIssuer as string, first.jwtSubject as string)).toEqual(first);

        // Re-pointing another registration at the taken subject is refused the same way, and changes nothing.
        const bystander = registration("bystander");
        await registrations.insert(bystander);
        await expect(Promise.resolve().then(() => registrations.update({ ...bystander, jwtSubject: first.jwtSubject, updatedAt: later(9) }))).rejects.toBeInstanceOf(
          BadUserInputError,
        );
        expect(await registrations.get(bystander.id)).toEqual(bystander);
      });

      it("lets exactly one of two nodes register the same JWT subject at once", async () => {
        const attempts = [registration("contested"), registration("contested", { maxTtlSeconds: 60 })];
        const outcomes = await Promise.allSettled([
          (async () => repositories.registrations.insert(attempts[0] as RegistrationRecord))(),
          (async () => otherNode.registrations.insert(attempts[1] as RegistrationRecord))(),
        ]);
        expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
        const rejected = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected");
        expect(rejected?.reason).toBeInstanceOf(BadUserInputError);
      });

      it("allows any number of token-only registrations (no JWT subject) for one identity", async () => {
        const { registrations } = repositories;
        const tokenOnly = { jwtIssuer: null, jwtSubject: null, spiffeId: "spiffe://anchorage.test/ns/batch/sa/job" };
        await registrations.insert(registration("job-a", tokenOnly));
        await registrations.insert(registration("job-b", tokenOnly));
        expect(await registrations.list({ spiffeIdPrefix: "spiffe://anchorage.test/ns/batch/" })).toHaveLength(2);
      });

      it("lists registrations by SPIFFE ID, optionally under a prefix", async () => {
        const { registrations } = repositories;
        await registrations.insert(registration("zeta", { jwtIssuer: null, jwtSubject: null, spiffeId: "spiffe://anchorage.test/ns/Zoo/sa/zeta" }));
        const all = await registrations.list({});
        const ids = all.map((record) => record.spiffeId);
        // Byte order, as SQLite compares: upper case before lower case.
        expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
        expect(ids.indexOf("spiffe://anchorage.test/ns/Zoo/sa/zeta")).toBeLessThan(ids.indexOf("spiffe://anchorage.test/ns/batch/sa/job"));
        const underDefault = await registrations.list({ spiffeIdPrefix: "spiffe://anchorage.test/ns/default/" });
        expect(underDefault.map((record) => record.spiffeId)).toEqual([
          "spiffe://anchorage.test/ns/default/sa/bystander",
          "spiffe://anchorage.test/ns/default/sa/contested",
          "spiffe://anchorage.test/ns/default/sa/unique",
        ]);
        expect(await registrations.list({ spiffeIdPrefix: "spiffe://anchorage.test/ns/nothing/" })).toEqual([]);
      });
    });
  });
}
