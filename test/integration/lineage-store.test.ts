/**
 * The store's side of the authority limits, on a real SQLite file: checks that must hold inside the reservation
 * transaction (a predecessor revoked after authentication, a JWT presented twice), the KEY_COMPROMISE cascade
 * along a lineage, and token refunds that must not bring a voided or expired token back.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import type { PreparedIssuance } from "../../src/ca/ports.js";
import { SqliteAuditEventRepository } from "../../src/store/audit-event-repository.js";
import { SqliteCertificateStore } from "../../src/store/certificate-store.js";
import type { SqliteDatabase } from "../../src/store/database.js";
import { SqliteEnrollmentTokenRepository, SqliteRegistrationRepository } from "../../src/store/policy-repositories.js";
import { SqliteRevocationRepository } from "../../src/store/revocation-repository.js";
import { RESERVATION_AUDIT as audit, insertToken, openScratchStore, preparedIssuance, type ScratchStore } from "../support/scratch-store.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));
const revokedEvent = (serial: string): AuditEvent => ({ type: "certificate.revoked", actor: "apikey:admin", outcome: "success", subject: serial });

let scratch: ScratchStore;
let db: SqliteDatabase;
let store: SqliteCertificateStore;
let tokens: SqliteEnrollmentTokenRepository;
let revocations: SqliteRevocationRepository;

const prepared = (overrides: Partial<PreparedIssuance> = {}): PreparedIssuance => preparedIssuance(NOW, overrides);
const addToken = (uses: number, expiresAt?: Date): { id: string; hash: Buffer } => insertToken(tokens, NOW, uses, expiresAt);

/** Reserves and completes a certificate, renewing `predecessorSerial` when given. */
async function issue(predecessorSerial?: string): Promise<string> {
  const item = prepared(predecessorSerial ? { predecessorSerial } : {});
  expect(await store.prepare([item], NOW)).toEqual([{ ok: true }]);
  await store.complete([{ serial: item.serial, der: randomBytes(50), fingerprintSha256: "ab", audit: { ...audit, type: "issuance.signed" } }], NOW);
  return item.serial;
}

const value = (sql: string, ...args: unknown[]): unknown => db.prepare(sql).pluck().get(...args);

beforeAll(async () => {
  scratch = openScratchStore("anchorage-lineage-", NOW);
  db = scratch.db;
  const auditEvents = new SqliteAuditEventRepository(db);
  store = new SqliteCertificateStore(db, auditEvents);
  tokens = new SqliteEnrollmentTokenRepository(db);
  revocations = new SqliteRevocationRepository(db, auditEvents);
});

afterAll(() => scratch.close());

describe("renewal reservations", () => {
  it("refuses a renewal whose predecessor was revoked between authentication and reservation, writing nothing", async () => {
    const predecessor = await issue();
    // Authentication read the predecessor as valid; the revocation lands before the reservation.
    expect((await store.get(predecessor))?.revokedAt).toBeNull();
    await revocations.revoke(predecessor, "KEY_COMPROMISE", NOW, revokedEvent(predecessor));
    const renewal = prepared({ predecessorSerial: predecessor });
    expect(await store.prepare([renewal], NOW)).toEqual([{ ok: false, reason: "PREDECESSOR_REVOKED" }]);
    expect(value("SELECT count(*) FROM certificates WHERE serial = ?", renewal.serial)).toBe(0);
  });

  it("refuses a renewal whose origin token was revoked between authentication and reservation, writing nothing", async () => {
    const token = addToken(1);
    const origin = { kind: "token" as const, tokenId: token.id, registrationId: null, maxTtlSeconds: 3600 };
    const first = prepared({ origin, consumeTokenHash: token.hash });
    expect(await store.prepare([first], NOW)).toEqual([{ ok: true }]);
    // Authentication found the token standing; an admin revokes it before the renewal's reservation.
    await tokens.revoke(token.id, NOW);
    const renewal = prepared({ origin, predecessorSerial: first.serial });
    expect(await store.prepare([renewal], NOW)).toEqual([{ ok: false, reason: "ORIGIN_WITHDRAWN" }]);
    expect(value("SELECT count(*) FROM certificates WHERE serial = ?", renewal.serial)).toBe(0);
  });

  it("refuses a renewal whose origin registration was deleted or re-pointed between authentication and reservation", async () => {
    const registration = (id: string, spiffeId: string) => ({
      id,
      spiffeId,
      dnsNames: [],
      maxTtlSeconds: 3600,
      jwtIssuer: null,
      jwtSubject: null,
      createdBy: "apikey:admin",
      createdAt: NOW,
      updatedAt: NOW,
    });
    const registrations = new SqliteRegistrationRepository(db);
    await registrations.insert(registration("reg_deleted", "spiffe://anchorage.test/web"));
    await registrations.insert(registration("reg_moved", "spiffe://anchorage.test/web"));
    const origins = ["reg_deleted", "reg_moved"].map((registrationId) => ({
      kind: "jwt" as const,
      issuer: "https://issuer.test",
      subject: "system:serviceaccount:default:web",
      registrationId,
      maxTtlSeconds: 3600,
    }));
    const firsts = origins.map((origin) => prepared({ origin }));
    expect(await store.prepare(firsts, NOW)).toEqual([{ ok: true }, { ok: true }]);
    registrations.delete("reg_deleted");
    registrations.update(registration("reg_moved", "spiffe://anchorage.test/elsewhere"));
    const renewals = origins.map((origin, index) => prepared({ origin, predecessorSerial: firsts[index]?.serial as string }));
    expect(await store.prepare(renewals, NOW)).toEqual([
      { ok: false, reason: "ORIGIN_WITHDRAWN" },
      { ok: false, reason: "ORIGIN_WITHDRAWN" },
    ]);
  });

  it("stores the lineage's origin and hands it back with the certificate", async () => {
    const origin = { kind: "token" as const, tokenId: "tok_1", registrationId: null, maxTtlSeconds: 120 };
    const item = prepared({ origin });
    await store.prepare([item], NOW);
    await store.complete([{ serial: item.serial, der: randomBytes(50), fingerprintSha256: "ab", audit: { ...audit, type: "issuance.signed" } }], NOW);
    expect((await store.get(item.serial))?.origin).toEqual(origin);
  });
});

describe("KEY_COMPROMISE cascade", () => {
  it("revokes every later certificate of the lineage in the same transaction, each with its own audit event", async () => {
    const first = await issue();
    const second = await issue(first);
    const third = await issue(second);
    const unrelated = await issue();
    // A renewal still in flight (reserved, not yet signed) is revoked too, so it cannot come out valid.
    const inFlight = prepared({ predecessorSerial: third });
    expect(await store.prepare([inFlight], NOW)).toEqual([{ ok: true }]);

    const outcome = await revocations.revoke(first, "KEY_COMPROMISE", NOW, revokedEvent(first), revokedEvent);
    expect(outcome).toMatchObject({ kind: "revoked", authorityId: "ca" });
    expect(outcome.kind !== "not-found" && outcome.successors.map((successor) => successor.serial).sort()).toEqual(
      [second, third, inFlight.serial].sort(),
    );
    for (const serial of [second, third, inFlight.serial]) {
      expect(value("SELECT revocation_reason FROM certificates WHERE serial = ?", serial)).toBe("KEY_COMPROMISE");
      expect(value("SELECT count(*) FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", serial)).toBe(1);
    }
    expect(value("SELECT revoked_at FROM certificates WHERE serial = ?", unrelated)).toBeNull();
    await store.complete([{ serial: inFlight.serial, der: randomBytes(50), fingerprintSha256: "ab", audit: { ...audit, type: "issuance.signed" } }], NOW);
    expect((await store.get(inFlight.serial))?.revokedAt).not.toBeNull();
  });

  it("revokes nothing else without a successor audit, as for other reasons", async () => {
    const first = await issue();
    const second = await issue(first);
    const outcome = await revocations.revoke(first, "SUPERSEDED", NOW, revokedEvent(first));
    expect(outcome).toMatchObject({ kind: "revoked", successors: [] });
    expect(value("SELECT revoked_at FROM certificates WHERE serial = ?", second)).toBeNull();
  });
});

describe("single-use JWTs", () => {
  const use = (tokenId: string, expiresAt = new Date(NOW.getTime() + 600_000)) => ({ issuer: "https://issuer.test", tokenId, expiresAt });

  it("records a jti in the reservation's transaction and refuses it a second time, also within one batch", async () => {
    expect(await store.prepare([prepared({ consumeJwt: use("jti-1") })], NOW)).toEqual([{ ok: true }]);
    const again = prepared({ consumeJwt: use("jti-1") });
    expect(await store.prepare([again], NOW)).toEqual([{ ok: false, reason: "JWT_REPLAYED" }]);
    expect(value("SELECT count(*) FROM certificates WHERE serial = ?", again.serial)).toBe(0);
    expect(await store.prepare([prepared({ consumeJwt: use("jti-2") }), prepared({ consumeJwt: use("jti-2") })], NOW)).toEqual([
      { ok: true },
      { ok: false, reason: "JWT_REPLAYED" },
    ]);
  });

  it("forgets a jti once its token has expired", async () => {
    await store.prepare([prepared({ consumeJwt: use("jti-old", new Date(NOW.getTime() + 1000)) })], NOW);
    const later = new Date(NOW.getTime() + 3_600_000);
    await store.prepare([prepared({ consumeJwt: use("jti-new", new Date(later.getTime() + 600_000)) })], later);
    expect(value("SELECT count(*) FROM jwt_uses WHERE jti = 'jti-old'")).toBe(0);
  });

  it("gives the jti back when signing fails, so the same token may try again", async () => {
    const item = prepared({ consumeJwt: use("jti-refund") });
    await store.prepare([item], NOW);
    await store.abandon([{ serial: item.serial, refundJwt: use("jti-refund"), audit: { ...audit, type: "issuance.failed", outcome: "failure" } }], NOW);
    expect(await store.prepare([prepared({ consumeJwt: use("jti-refund") })], NOW)).toEqual([{ ok: true }]);
  });
});

describe("token refunds", () => {
  const abandonWithRefund = async (hash: Buffer, serial: string, now = NOW) =>
    store.abandon([{ serial, refundTokenHash: hash, audit: { ...audit, type: "issuance.failed", outcome: "failure" } }], now);

  it("does not give a use back to a token voided while the certificate was being signed", async () => {
    const token = addToken(1);
    const item = prepared({ consumeTokenHash: token.hash });
    await store.prepare([item], NOW);
    expect(await tokens.revoke(token.id, NOW)).toBe(0);
    await abandonWithRefund(token.hash, item.serial);
    expect(value("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(0);
  });

  it("does not give a use back to a token that expired meanwhile, and does to a live one", async () => {
    const expiring = addToken(1, new Date(NOW.getTime() + 1000));
    const item = prepared({ consumeTokenHash: expiring.hash });
    await store.prepare([item], NOW);
    await abandonWithRefund(expiring.hash, item.serial, new Date(NOW.getTime() + 2000));
    expect(value("SELECT uses_left FROM enrollment_tokens WHERE id = ?", expiring.id)).toBe(0);

    const live = addToken(1);
    const other = prepared({ consumeTokenHash: live.hash });
    await store.prepare([other], NOW);
    await abandonWithRefund(live.hash, other.serial);
    expect(value("SELECT uses_left FROM enrollment_tokens WHERE id = ?", live.id)).toBe(1);
  });
});
