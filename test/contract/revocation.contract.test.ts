/**
 * The revocation, CRL and OCSP repositories' contract, the same tests on every storage engine: idempotent
 * revocation and the KEY_COMPROMISE cascade along a lineage, the entries a CRL must list (streamed in
 * chunks), CRL numbers that only go up, and stored OCSP responses that a revocation is never overwritten
 * by. On PostgreSQL the races run from two nodes (two connection pools on one database) at once.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import type { PreparedIssuance, ReservationResult } from "../../src/ca/ports.js";
import type { RevocationOutcome, StoredOcspResponse } from "../../src/revocation/ports.js";
import { issueOn, openContractStore, type ContractStore, type StoreNode } from "../support/store-contract.js";
import { STORE_ENGINES } from "../support/store-engines.js";
import { RESERVATION_AUDIT as audit, placeholderAuthority, preparedIssuance } from "../support/scratch-store.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));
const HOUR_MS = 3_600_000;
const signed = { ...audit, type: "issuance.signed" } as const;
const revokedEvent = (serial: string): AuditEvent => ({ type: "certificate.revoked", actor: "apikey:admin", outcome: "success", subject: serial });

const prepared = (overrides: Partial<PreparedIssuance> = {}): PreparedIssuance => preparedIssuance(NOW, overrides);
const successorSerials = (outcome: RevocationOutcome): string[] => (outcome.kind === "not-found" ? [] : outcome.successors.map((successor) => successor.serial).sort());

for (const engine of STORE_ENGINES) {
  describe.skipIf(!engine.available)(`revocation, CRL and OCSP repositories on ${engine.kind}`, () => {
    let store: ContractStore;
    let a: StoreNode;
    let b: StoreNode;

    beforeAll(async () => {
      store = await openContractStore(await engine.open(), NOW);
      [a, b] = store.nodes;
    });
    afterAll(() => store?.close());

    const count = async (sql: string, ...parameters: unknown[]): Promise<number> => Number(await store.value(sql, ...parameters));

    const issue = (node: StoreNode, overrides: Partial<PreparedIssuance> = {}): Promise<string> => issueOn(node, NOW, overrides);

    /** A fresh intermediate, so that a test's CRL entries and counters are its own. */
    async function freshAuthority(): Promise<string> {
      const id = `ca-${randomBytes(4).toString("hex")}`;
      await store.insertAuthority(placeholderAuthority(id, "intermediate", "published", NOW));
      return id;
    }

    describe("revoke", () => {
      it("revokes once: a second revocation keeps the first time and reason and writes nothing; an unknown serial is not found", async () => {
        const serial = await issue(a);
        const later = new Date(NOW.getTime() + 1000);
        expect(await a.revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial))).toEqual({ kind: "revoked", authorityId: "ca", successors: [] });
        expect(await b.revocations.revoke(serial, "SUPERSEDED", later, revokedEvent(serial))).toEqual({ kind: "already-revoked", authorityId: "ca", successors: [] });
        const record = await b.ledger.get(serial, NOW);
        expect(record?.revokedAt).toEqual(NOW);
        expect(record?.revocationReason).toBe("KEY_COMPROMISE");
        expect(await count("SELECT count(*) FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", serial)).toBe(1);
        expect(await a.revocations.revoke("00".repeat(16), "KEY_COMPROMISE", NOW, revokedEvent("x"))).toEqual({ kind: "not-found" });
      });

      it("reports one revocation when two nodes revoke one certificate at once", async () => {
        const serial = await issue(a);
        const outcomes = await Promise.all([a, b, a, b].map((node) => node.revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial))));
        expect(outcomes.map((outcome) => outcome.kind).sort()).toEqual(["already-revoked", "already-revoked", "already-revoked", "revoked"]);
        expect(await count("SELECT count(*) FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", serial)).toBe(1);
      });

      it("revokes every later certificate of the lineage with KEY_COMPROMISE, in-flight ones too, each with its own audit event", async () => {
        const first = await issue(a);
        const second = await issue(b, { predecessorSerial: first });
        const third = await issue(a, { predecessorSerial: second });
        const unrelated = await issue(b);
        const inFlight = prepared({ predecessorSerial: third });
        expect(await b.ledger.prepare([inFlight], NOW)).toEqual([{ ok: true }]);

        const outcome = await a.revocations.revoke(first, "KEY_COMPROMISE", NOW, revokedEvent(first), revokedEvent);
        expect(outcome).toMatchObject({ kind: "revoked", authorityId: "ca" });
        expect(successorSerials(outcome)).toEqual([second, third, inFlight.serial].sort());
        for (const serial of [second, third, inFlight.serial]) {
          expect(await store.value("SELECT revocation_reason FROM certificates WHERE serial = ?", serial)).toBe("KEY_COMPROMISE");
          expect(await count("SELECT count(*) FROM audit_events WHERE type = 'certificate.revoked' AND subject = ?", serial)).toBe(1);
        }
        expect(await store.value("SELECT revoked_at FROM certificates WHERE serial = ?", unrelated)).toBeNull();
        await b.ledger.complete([{ serial: inFlight.serial, der: randomBytes(50), fingerprintSha256: "ab", audit: signed }], NOW);
        expect((await a.ledger.get(inFlight.serial, NOW))?.revokedAt).toEqual(NOW);
        // Again: nothing left to revoke, and the outcome says the certificate was revoked already.
        expect(await b.revocations.revoke(first, "KEY_COMPROMISE", NOW, revokedEvent(first), revokedEvent)).toEqual({
          kind: "already-revoked",
          authorityId: "ca",
          successors: [],
        });
      });

      it("revokes nothing else without a successor audit", async () => {
        const first = await issue(a);
        const second = await issue(a, { predecessorSerial: first });
        expect(await b.revocations.revoke(first, "SUPERSEDED", NOW, revokedEvent(first))).toMatchObject({ kind: "revoked", successors: [] });
        expect(await store.value("SELECT revoked_at FROM certificates WHERE serial = ?", second)).toBeNull();
      });

      it("leaves no valid successor when a lineage is renewed on one node while it is revoked for KEY_COMPROMISE on another", async () => {
        for (let round = 0; round < 8; round++) {
          const first = await issue(a);
          const second = await issue(a, { predecessorSerial: first });
          const renewal = prepared({ predecessorSerial: second });
          const [reservation] = (await Promise.all([
            b.ledger.prepare([renewal], NOW),
            a.revocations.revoke(first, "KEY_COMPROMISE", NOW, revokedEvent(first), revokedEvent),
          ])) as [ReservationResult[], RevocationOutcome];
          if (reservation[0]?.ok) {
            expect(await store.value("SELECT revocation_reason FROM certificates WHERE serial = ?", renewal.serial)).toBe("KEY_COMPROMISE");
          } else {
            expect(reservation).toEqual([{ ok: false, reason: "PREDECESSOR_REVOKED" }]);
          }
          expect(await count("SELECT count(*) FROM certificates WHERE serial IN (?, ?, ?) AND revoked_at IS NULL", first, second, renewal.serial)).toBe(0);
        }
      });
    });

    describe("CRL entries", () => {
      it("streams every revoked certificate of an authority in (revoked_at, serial) order, across chunks", async () => {
        const authorityId = await freshAuthority();
        const items = Array.from({ length: 1100 }, () => prepared({ authorityId }));
        await a.ledger.prepare(items, NOW);
        await a.ledger.complete(
          items.map((item) => ({ serial: item.serial, der: Buffer.from([1]), fingerprintSha256: "ab", audit: signed })),
          NOW,
        );
        // Three revocation times, so that many entries share one and the serial orders them.
        await store.execute(
          "UPDATE certificates SET revoked_at = CAST(? AS BIGINT) + (CASE WHEN substr(serial, 1, 1) < '6' THEN 0 WHEN substr(serial, 1, 1) < 'b' THEN 1 ELSE 2 END), revocation_reason = 'KEY_COMPROMISE' WHERE authority_id = ?",
          NOW.getTime(),
          authorityId,
        );
        await store.execute("UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL WHERE serial = ?", items[0]?.serial);
        const entries = [];
        for await (const entry of b.revocations.revokedEntries(authorityId)) entries.push(entry);
        const bucket = (serial: string): number => (serial[0] as string) < "6" ? 0 : (serial[0] as string) < "b" ? 1 : 2;
        const expected = items
          .slice(1)
          .map((item) => item.serial)
          .sort((x, y) => bucket(x) - bucket(y) || (x < y ? -1 : x > y ? 1 : 0));
        expect(entries.map((entry) => entry.serial)).toEqual(expected);
        expect(entries[0]).toEqual({ serial: expected[0], revokedAt: new Date(NOW.getTime() + bucket(expected[0] as string)), reason: "KEY_COMPROMISE", notAfter: new Date(NOW.getTime() + HOUR_MS) });
      });

      it("drops an expired entry once a CRL issued after its expiry listed it, keeping the first such CRL", async () => {
        const authorityId = await freshAuthority();
        const expired = await issue(a, { authorityId });
        const valid = await issue(a, { authorityId, notAfter: new Date(NOW.getTime() + 10 * HOUR_MS) });
        for (const serial of [expired, valid]) await b.revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial));
        const entries = async () => {
          const serials: string[] = [];
          for await (const entry of a.revocations.revokedEntries(authorityId)) serials.push(entry.serial);
          return serials.sort();
        };
        expect(await entries()).toEqual([expired, valid].sort());
        const firstCrl = new Date(NOW.getTime() + 2 * HOUR_MS);
        await b.revocations.recordListedAfterExpiry(authorityId, [], firstCrl);
        await b.revocations.recordListedAfterExpiry("another-authority", [expired], firstCrl);
        expect(await entries()).toEqual([expired, valid].sort());
        await b.revocations.recordListedAfterExpiry(authorityId, [expired, valid], firstCrl);
        expect(await entries()).toEqual([valid]);
        await a.revocations.recordListedAfterExpiry(authorityId, [expired], new Date(firstCrl.getTime() + HOUR_MS));
        expect(await count("SELECT crl_listed_after_expiry_at FROM certificates WHERE serial = ?", expired)).toBe(firstCrl.getTime());
      });
    });

    describe("CRL numbers and CRLs", () => {
      it("reserves strictly increasing CRL numbers per authority, also when two nodes reserve at once", async () => {
        const authorityId = await freshAuthority();
        const other = await freshAuthority();
        const numbers = await Promise.all(Array.from({ length: 30 }, (_, index) => (index % 2 === 0 ? a : b).revocations.reserveCrlNumber(authorityId)));
        expect(numbers.every((number) => typeof number === "bigint")).toBe(true);
        expect([...numbers].sort((x, y) => (x < y ? -1 : 1))).toEqual(Array.from({ length: 30 }, (_, index) => BigInt(index + 1)));
        expect(await b.revocations.reserveCrlNumber(authorityId)).toBe(31n);
        expect(await a.revocations.reserveCrlNumber(other)).toBe(1n);
      });

      it("stores a CRL only over an older number, also when two nodes save at once", async () => {
        const authorityId = await freshAuthority();
        const crl = (crlNumber: bigint) => ({
          authorityId,
          crlNumber,
          der: Buffer.from(`crl ${crlNumber}`),
          thisUpdate: NOW,
          nextUpdate: new Date(NOW.getTime() + HOUR_MS),
        });
        expect(await a.crls.get(authorityId)).toBeUndefined();
        await a.crls.save(crl(5n));
        await expect(b.crls.save(crl(5n))).rejects.toThrow(RangeError);
        await expect(b.crls.save(crl(4n))).rejects.toThrow(/not above/);
        const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, index) => (index % 2 === 0 ? a : b).crls.save(crl(BigInt(10 + index)))));
        expect(outcomes.some((outcome) => outcome.status === "fulfilled")).toBe(true);
        for (const outcome of outcomes) if (outcome.status === "rejected") expect(outcome.reason).toBeInstanceOf(RangeError);
        expect(await b.crls.get(authorityId)).toEqual(crl(29n));
        // Numbers beyond 2^53 survive the round trip (BIGINT, not a double).
        await a.crls.save(crl(2n ** 62n));
        expect((await b.crls.get(authorityId))?.crlNumber).toBe(2n ** 62n);
      });
    });

    describe("OCSP", () => {
      const response = (serial: string, thisUpdate: Date, der = `ocsp ${thisUpdate.getTime()}`): StoredOcspResponse => ({
        authorityId: "ca",
        serial,
        hashAlgorithm: "sha256",
        der: Buffer.from(der),
        thisUpdate,
        nextUpdate: new Date(thisUpdate.getTime() + HOUR_MS),
      });

      it("stores and serves responses, and answers the status of a serial", async () => {
        const serial = await issue(a);
        expect(await b.ocsp.status("ca", serial)).toEqual({ kind: "good" });
        expect(await b.ocsp.status("another", serial)).toEqual({ kind: "unknown" });
        expect(await a.ocsp.saveResponse(response(serial, NOW), "good")).toBe(true);
        expect(await b.ocsp.getResponse("ca", serial, "sha256")).toEqual(response(serial, NOW));
        expect(await b.ocsp.getResponse("ca", serial, "sha1")).toBeUndefined();
        // An older response never replaces a newer one.
        await b.ocsp.saveResponse(response(serial, new Date(NOW.getTime() - 1000)), "good");
        expect((await a.ocsp.getResponse("ca", serial, "sha256"))?.thisUpdate).toEqual(NOW);
        await a.revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial));
        expect(await b.ocsp.status("ca", serial)).toEqual({ kind: "revoked", revokedAt: NOW, reason: "KEY_COMPROMISE" });
      });

      it("never overwrites a revocation with a response signed for good before it", async () => {
        const serial = await issue(a);
        const signedGood = response(serial, new Date(NOW.getTime() + 1000), "good");
        await b.revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial));
        const signedRevoked = response(serial, new Date(NOW.getTime() + 500), "revoked");
        expect(await a.ocsp.saveResponses([{ response: signedRevoked, signedStatus: "revoked" }, { response: signedGood, signedStatus: "good" }])).toEqual([signedRevoked]);
        expect(await b.ocsp.saveResponse(signedGood, "good")).toBe(false);
        expect((await a.ocsp.getResponse("ca", serial, "sha256"))?.der.toString()).toBe("revoked");
      });

      it("stores a good response or the revocation wins when both race from two nodes, never a good answer for a revoked certificate", async () => {
        for (let round = 0; round < 8; round++) {
          const serial = await issue(a);
          await Promise.all([
            a.ocsp.saveResponse(response(serial, NOW, "good"), "good"),
            b.revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial)),
          ]);
          // Whichever committed first, the revoked response the responder signs next is stored and a good one is refused.
          const revokedResponse = response(serial, new Date(NOW.getTime() + 1), "revoked");
          expect(await b.ocsp.saveResponse(revokedResponse, "revoked")).toBe(true);
          expect(await a.ocsp.saveResponse(response(serial, new Date(NOW.getTime() + 2), "good"), "good")).toBe(false);
          expect((await b.ocsp.getResponse("ca", serial, "sha256"))?.der.toString()).toBe("revoked");
        }
      });

      it("gives a responder certificate's creation to one node at a time, and takes back a claim gone stale", async () => {
        const authorityId = await freshAuthority();
        const staleBefore = new Date(NOW.getTime() - 60_000);
        const claims = await Promise.all([a, b, a, b, a, b].map((node) => node.ocsp.claimSignerCreation(authorityId, NOW, staleBefore)));
        expect(claims.filter(Boolean)).toHaveLength(1);
        const later = new Date(NOW.getTime() + 120_000);
        expect(await b.ocsp.claimSignerCreation(authorityId, later, new Date(later.getTime() - 60_000))).toBe(true);
      });

      it("keeps responder certificates and hands out the one that lasts longest", async () => {
        const authorityId = await freshAuthority();
        expect(await a.ocsp.newestSigner(authorityId)).toBeUndefined();
        const signer = (keyLabel: string, hours: number) => ({
          keyLabel,
          authorityId,
          certificateDer: randomBytes(30),
          notBefore: NOW,
          notAfter: new Date(NOW.getTime() + hours * HOUR_MS),
          createdAt: NOW,
        });
        const longer = signer(`${authorityId}-ocsp-2`, 48);
        await a.ocsp.insertSigner(signer(`${authorityId}-ocsp-1`, 24));
        await b.ocsp.insertSigner(longer);
        expect(await a.ocsp.newestSigner(authorityId)).toEqual(longer);
      });

      it("lists responses due for refresh oldest first, and drops those of expired certificates", async () => {
        const soon = await issue(a);
        const later = await issue(a, { notAfter: new Date(NOW.getTime() + 10 * HOUR_MS) });
        await a.ocsp.saveResponse({ ...response(later, NOW), hashAlgorithm: "sha1", nextUpdate: new Date(NOW.getTime() + 100) }, "good");
        await a.ocsp.saveResponse({ ...response(soon, NOW), hashAlgorithm: "sha1", nextUpdate: new Date(NOW.getTime() + 50) }, "good");
        const due = await b.ocsp.responsesDue(new Date(NOW.getTime() + 200), NOW, 1000);
        const ours = due.filter((entry) => entry.serial === soon || entry.serial === later);
        expect(ours).toEqual([
          { authorityId: "ca", serial: soon, hashAlgorithm: "sha1" },
          { authorityId: "ca", serial: later, hashAlgorithm: "sha1" },
        ]);
        const afterSoonExpired = new Date(NOW.getTime() + 2 * HOUR_MS);
        expect(await a.ocsp.deleteExpired(afterSoonExpired)).toBeGreaterThanOrEqual(1);
        expect(await b.ocsp.getResponse("ca", soon, "sha1")).toBeUndefined();
        expect(await b.ocsp.getResponse("ca", later, "sha1")).toBeDefined();
      });
    });
  });
}
