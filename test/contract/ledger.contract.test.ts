/**
 * The certificate ledger's contract, the same tests on every storage engine: reservations (token uses, JWT
 * uses, lineage checks), completion and abandonment with their audit events, and history paging. On
 * PostgreSQL the races run from two nodes (two connection pools on one database) at once: token uses never
 * exceed the token's, one live successor per certificate, serials unique, and history numbered in commit
 * order so that a reader paging while others write neither misses nor repeats a certificate.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CertificateOrigin } from "../../src/ca/model.js";
import type { JwtUse, PreparedIssuance, ReservationResult } from "../../src/ca/ports.js";
import { BadUserInputError } from "../../src/common/errors.js";
import { issueOn, openContractStore, type ContractStore, type StoreNode } from "../support/store-contract.js";
import { STORE_ENGINES } from "../support/store-engines.js";
import { RESERVATION_AUDIT as audit, preparedIssuance } from "../support/scratch-store.js";

const NOW = new Date(Date.UTC(2026, 10, 22, 12));
const signed = { ...audit, type: "issuance.signed" } as const;

const prepared = (overrides: Partial<PreparedIssuance> = {}): PreparedIssuance => preparedIssuance(NOW, overrides);

for (const engine of STORE_ENGINES) {
  describe.skipIf(!engine.available)(`certificate ledger on ${engine.kind}`, () => {
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

    describe("reservations", () => {
      it("reserves, completes and then serves a certificate, with an audit event per step", async () => {
        const item = prepared({ dnsNames: ["web.svc"] });
        const before = await count("SELECT count(*) FROM audit_events");
        expect(await a.ledger.prepare([item], NOW)).toEqual([{ ok: true }]);
        expect(await b.ledger.get(item.serial, NOW)).toBeUndefined(); // reserved is not issued
        await b.ledger.complete([{ serial: item.serial, der: Buffer.from("cert"), fingerprintSha256: "ab", audit: signed }], NOW);
        const record = await a.ledger.get(item.serial, NOW);
        expect(record).toMatchObject({ serial: item.serial, authorityId: "ca", dnsNames: ["web.svc"], revokedAt: null, profile: "workload" });
        expect(record?.der.toString()).toBe("cert");
        expect(record?.notAfter).toEqual(item.notAfter);
        expect(await count("SELECT count(*) FROM audit_events")).toBe(before + 2);
      });

      it("takes exactly a token's uses when twenty reservations on two nodes compete for five", async () => {
        const token = await store.insertToken(NOW, 5);
        const items = Array.from({ length: 20 }, () => prepared({ consumeTokenHash: token.hash }));
        const results = (await Promise.all(items.map((item, index) => (index % 2 === 0 ? a : b).ledger.prepare([item], NOW)))).flat();
        expect(results.filter((result) => result.ok)).toHaveLength(5);
        expect(results.filter((result) => !result.ok)).toEqual(Array.from({ length: 15 }, () => ({ ok: false, reason: "TOKEN_EXHAUSTED" })));
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(0);
        const reserved = items.filter((_, index) => results[index]?.ok).map((item) => item.serial);
        expect(await count(`SELECT count(*) FROM certificates WHERE serial IN (${items.map(() => "?").join(", ")})`, ...items.map((item) => item.serial))).toBe(5);
        expect(reserved).toHaveLength(5);
      });

      it("decides each item of a batch on its own, in order, in one transaction", async () => {
        const token = await store.insertToken(NOW, 1);
        const batch = [prepared({ consumeTokenHash: token.hash }), prepared({ consumeTokenHash: token.hash }), prepared()];
        expect(await a.ledger.prepare(batch, NOW)).toEqual([{ ok: true }, { ok: false, reason: "TOKEN_EXHAUSTED" }, { ok: true }]);
        expect(await count("SELECT count(*) FROM certificates WHERE serial IN (?, ?, ?)", ...batch.map((item) => item.serial))).toBe(2);
      });

      it("refuses an expired token without writing a row", async () => {
        const token = await store.insertToken(NOW, 5, new Date(NOW.getTime() - 1));
        const item = prepared({ consumeTokenHash: token.hash });
        expect(await a.ledger.prepare([item], NOW)).toEqual([{ ok: false, reason: "TOKEN_EXHAUSTED" }]);
        expect(await count("SELECT count(*) FROM certificates WHERE serial = ?", item.serial)).toBe(0);
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(5);
      });

      it("abandons a reservation: state failed, token use given back, audited", async () => {
        const token = await store.insertToken(NOW, 1);
        const item = prepared({ consumeTokenHash: token.hash });
        await a.ledger.prepare([item], NOW);
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(0);
        const failures = await count("SELECT count(*) FROM audit_events WHERE type = 'issuance.failed'");
        await b.ledger.abandon([{ serial: item.serial, refundTokenHash: token.hash, audit: { ...audit, type: "issuance.failed", outcome: "failure" } }], NOW);
        expect(await store.value("SELECT state FROM certificates WHERE serial = ?", item.serial)).toBe("failed");
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(1);
        expect(await count("SELECT count(*) FROM audit_events WHERE type = 'issuance.failed'")).toBe(failures + 1);
      });

      it("does not give a use back to a token voided or expired while the certificate was being signed", async () => {
        const voided = await store.insertToken(NOW, 1);
        const expiring = await store.insertToken(NOW, 1, new Date(NOW.getTime() + 1000));
        const items = [prepared({ consumeTokenHash: voided.hash }), prepared({ consumeTokenHash: expiring.hash })];
        expect(await a.ledger.prepare(items, NOW)).toEqual([{ ok: true }, { ok: true }]);
        await store.execute("UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ?", NOW.getTime(), voided.id);
        const later = new Date(NOW.getTime() + 2000);
        await a.ledger.abandon(
          items.map((item) => ({ serial: item.serial, refundTokenHash: item.consumeTokenHash, audit: { ...audit, type: "issuance.failed", outcome: "failure" } as const })),
          later,
        );
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", voided.id)).toBe(0);
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", expiring.id)).toBe(0);
      });

      it("keeps serials unique by constraint: of two nodes reserving one serial, one fails and its token use is not lost", async () => {
        const token = await store.insertToken(NOW, 2);
        const serial = randomBytes(16).toString("hex");
        const outcomes = await Promise.allSettled([
          a.ledger.prepare([prepared({ serial, consumeTokenHash: token.hash })], NOW),
          b.ledger.prepare([prepared({ serial, consumeTokenHash: token.hash })], NOW),
        ]);
        expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(["fulfilled", "rejected"]);
        expect(await count("SELECT count(*) FROM certificates WHERE serial = ?", serial)).toBe(1);
        expect(await count("SELECT uses_left FROM enrollment_tokens WHERE id = ?", token.id)).toBe(1);
      });

      it("refuses to complete a serial that was never reserved, and one completed already", async () => {
        await expect(a.ledger.complete([{ serial: "ff".repeat(16), der: Buffer.from("x"), fingerprintSha256: "00", audit: signed }], NOW)).rejects.toThrow(
          /not reserved/,
        );
        const serial = await issue(a);
        await expect(b.ledger.complete([{ serial, der: Buffer.from("x"), fingerprintSha256: "00", audit: signed }], NOW)).rejects.toThrow(/not reserved/);
      });

      it("completes a batch in its order, or none of it when one item was never reserved", async () => {
        const batch = Array.from({ length: 3 }, () => prepared({ dnsNames: ["batch.svc"] }));
        await a.ledger.prepare(batch, NOW);
        const completion = (serial: string) => ({ serial, der: randomBytes(20), fingerprintSha256: "ab", audit: signed });
        await expect(b.ledger.complete([completion(batch[0]?.serial as string), completion("ee".repeat(16))], NOW)).rejects.toThrow(/not reserved/);
        expect(await a.ledger.get(batch[0]?.serial as string, NOW)).toBeUndefined();
        await b.ledger.complete(batch.map((item) => completion(item.serial)), NOW);
        const page = await a.ledger.list({ dnsName: "batch.svc" }, 10, undefined, NOW);
        expect(page.items.map((item) => item.serial)).toEqual(batch.map((item) => item.serial));
      });

      it("reports the database writable", async () => {
        await expect(a.ledger.probeWritable()).resolves.toBeUndefined();
      });
    });

    describe("single-use JWTs", () => {
      const use = (tokenId: string, expiresAt = new Date(NOW.getTime() + 600_000)): JwtUse => ({ issuer: "https://issuer.test", tokenId, expiresAt });

      it("records a jti once: of reservations on two nodes presenting it at once, one succeeds", async () => {
        const jti = `jti-${randomBytes(4).toString("hex")}`;
        expect(await a.ledger.jwtAlreadyUsed(use(jti), NOW)).toBe(false);
        const results = (await Promise.all([a, b, a, b].map((node) => node.ledger.prepare([prepared({ consumeJwt: use(jti) })], NOW)))).flat();
        expect(results.filter((result) => result.ok)).toHaveLength(1);
        expect(results.filter((result) => !result.ok)).toEqual(Array.from({ length: 3 }, () => ({ ok: false, reason: "JWT_REPLAYED" })));
        expect(await b.ledger.jwtAlreadyUsed(use(jti), NOW)).toBe(true);
        expect(await a.ledger.prepare([prepared({ consumeJwt: use(`${jti}-2`) }), prepared({ consumeJwt: use(`${jti}-2`) })], NOW)).toEqual([
          { ok: true },
          { ok: false, reason: "JWT_REPLAYED" },
        ]);
      });

      it("forgets a jti once its token has expired, and gives it back when signing fails", async () => {
        await a.ledger.prepare([prepared({ consumeJwt: use("jti-old", new Date(NOW.getTime() + 1000)) })], NOW);
        const later = new Date(NOW.getTime() + 3_600_000);
        await a.ledger.prepare([prepared({ consumeJwt: use("jti-new", new Date(later.getTime() + 600_000)) })], later);
        expect(await count("SELECT count(*) FROM jwt_uses WHERE jti = 'jti-old'")).toBe(0);

        const item = prepared({ consumeJwt: use("jti-refund") });
        await a.ledger.prepare([item], NOW);
        await b.ledger.abandon([{ serial: item.serial, refundJwt: use("jti-refund"), audit: { ...audit, type: "issuance.failed", outcome: "failure" } }], NOW);
        expect(await a.ledger.prepare([prepared({ consumeJwt: use("jti-refund") })], NOW)).toEqual([{ ok: true }]);
      });
    });

    describe("lineage", () => {
      it("keeps one live successor when two nodes renew the same certificate at once", async () => {
        for (let round = 0; round < 5; round++) {
          const predecessorSerial = await issue(a);
          const renewals = [prepared({ predecessorSerial }), prepared({ predecessorSerial })];
          const [first, second] = (await Promise.all([a.ledger.prepare([renewals[0] as PreparedIssuance], NOW), b.ledger.prepare([renewals[1] as PreparedIssuance], NOW)])).flat() as [
            ReservationResult,
            ReservationResult,
          ];
          const winner = first.ok ? renewals[0] : renewals[1];
          expect([first, second].filter((result) => result.ok)).toHaveLength(1);
          expect([first, second].find((result) => !result.ok)).toEqual({ ok: false, reason: "SUPERSEDED", successorSerial: winner?.serial });
          expect(await count("SELECT count(*) FROM certificates WHERE predecessor_serial = ?", predecessorSerial)).toBe(1);
        }
      });

      it("lets a renewal through again once the live successor failed", async () => {
        const predecessorSerial = await issue(a);
        const attempt = prepared({ predecessorSerial });
        await a.ledger.prepare([attempt], NOW);
        await a.ledger.abandon([{ serial: attempt.serial, audit: { ...audit, type: "issuance.failed", outcome: "failure" } }], NOW);
        expect(await b.ledger.prepare([prepared({ predecessorSerial })], NOW)).toEqual([{ ok: true }]);
      });

      it("refuses a renewal whose predecessor was revoked, or whose origin token was revoked, writing nothing", async () => {
        const revoked = await issue(a);
        await b.revocations.revoke(revoked, "KEY_COMPROMISE", NOW, { type: "certificate.revoked", actor: "apikey:admin", outcome: "success", subject: revoked });
        const renewal = prepared({ predecessorSerial: revoked });
        expect(await a.ledger.prepare([renewal], NOW)).toEqual([{ ok: false, reason: "PREDECESSOR_REVOKED" }]);

        const token = await store.insertToken(NOW, 1);
        const origin: CertificateOrigin = { kind: "token", tokenId: token.id, registrationId: null, maxTtlSeconds: 3600 };
        const first = await issue(a, { origin });
        expect((await b.ledger.get(first, NOW))?.origin).toEqual(origin);
        await store.execute("UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ?", NOW.getTime(), token.id);
        const withdrawn = prepared({ predecessorSerial: first, origin });
        expect(await b.ledger.prepare([withdrawn], NOW)).toEqual([{ ok: false, reason: "ORIGIN_WITHDRAWN" }]);
        expect(await count("SELECT count(*) FROM certificates WHERE serial IN (?, ?)", renewal.serial, withdrawn.serial)).toBe(0);
      });

      it("refuses a renewal whose origin registration was deleted or re-pointed", async () => {
        const registrationId = `reg_${randomBytes(4).toString("hex")}`;
        await store.execute(
          `INSERT INTO registrations (id, spiffe_id, dns_names, max_ttl_seconds, jwt_issuer, jwt_subject, created_by, created_at, updated_at)
           VALUES (?, 'spiffe://anchorage.test/web', '[]', 3600, 'https://issuer.test', ?, 'apikey:admin', ?, ?)`,
          registrationId,
          registrationId,
          NOW.getTime(),
          NOW.getTime(),
        );
        const origin: CertificateOrigin = { kind: "jwt", issuer: "https://issuer.test", subject: registrationId, registrationId, maxTtlSeconds: 3600 };
        const first = await issue(a, { origin });
        const second = await issue(b, { origin, predecessorSerial: first });
        await store.execute("UPDATE registrations SET spiffe_id = 'spiffe://anchorage.test/other' WHERE id = ?", registrationId);
        expect(await a.ledger.prepare([prepared({ predecessorSerial: second, origin })], NOW)).toEqual([{ ok: false, reason: "ORIGIN_WITHDRAWN" }]);
        await store.execute("DELETE FROM registrations WHERE id = ?", registrationId);
        expect(await b.ledger.prepare([prepared({ predecessorSerial: second, origin })], NOW)).toEqual([{ ok: false, reason: "ORIGIN_WITHDRAWN" }]);
      });
    });

    describe("history", () => {
      it("numbers certificates uniquely when two nodes complete at once", async () => {
        const items = Array.from({ length: 20 }, () => prepared());
        await a.ledger.prepare(items, NOW);
        await Promise.all(
          items.map((item, index) =>
            (index % 2 === 0 ? a : b).ledger.complete([{ serial: item.serial, der: randomBytes(20), fingerprintSha256: "ab", audit: signed }], NOW),
          ),
        );
        expect(await count("SELECT count(DISTINCT issued_seq) FROM certificates WHERE issued_seq IS NOT NULL")).toBe(
          await count("SELECT count(*) FROM certificates WHERE state = 'issued'"),
        );
      });

      it("pages through history while two nodes write, missing and repeating nothing, in a stable order", async () => {
        const spiffeId = `spiffe://anchorage.test/paging-${engine.kind}`;
        for (let index = 0; index < 10; index++) await issue(a, { spiffeId });
        // Reserved before the reader starts and signed while it reads: numbered when signed, so still ahead of the reader.
        const early = Array.from({ length: 6 }, () => prepared({ spiffeId }));
        await a.ledger.prepare(early, NOW);

        let writing = true;
        const writers = (async () => {
          const writes: Promise<unknown>[] = [];
          for (let index = 0; index < 30; index++) {
            const node = index % 2 === 0 ? a : b;
            writes.push(issue(node, { spiffeId }));
            const completing = early[index];
            if (completing) {
              writes.push(node.ledger.complete([{ serial: completing.serial, der: randomBytes(20), fingerprintSha256: "ab", audit: signed }], NOW));
            }
            if (index % 5 === 4) await Promise.all(writes.splice(0));
          }
          await Promise.all(writes);
          writing = false;
        })();

        const seen: string[] = [];
        const positions: string[] = [];
        let after: string | undefined;
        // Keep reading from the last cursor until the writers are done and a read after that finds nothing new.
        for (let finished = false; !finished; ) {
          const wasWriting = writing;
          const page = await b.ledger.list({ spiffeId }, 4, after, NOW);
          seen.push(...page.items.map((item) => item.serial));
          positions.push(...page.cursors);
          after = page.cursors.at(-1) ?? after;
          finished = !wasWriting && !page.hasNextPage;
          if (!page.hasNextPage && wasWriting) await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await writers;

        const everything: string[] = [];
        for await (const record of a.ledger.iterate({ spiffeId }, NOW)) everything.push(record.serial);
        expect(everything).toHaveLength(46);
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen).toEqual(everything);
        expect(new Set(positions).size).toBe(positions.length);
      });

      it("filters by serial, SPIFFE ID prefix, DNS name, status and issue time, and counts the matches", async () => {
        const prefix = `spiffe://anchorage.test/filter-${engine.kind}/`;
        const dns = await issue(a, { spiffeId: `${prefix}a`, dnsNames: ["api.filter.test", "www.filter.test"] });
        const plain = await issue(b, { spiffeId: `${prefix}b` });
        const revoked = await issue(a, { spiffeId: `${prefix}c` });
        await b.revocations.revoke(revoked, "SUPERSEDED", NOW, { type: "certificate.revoked", actor: "apikey:admin", outcome: "success", subject: revoked });
        const serials = async (filter: Parameters<StoreNode["ledger"]["list"]>[0], at = NOW) => {
          const page = await a.ledger.list(filter, 50, undefined, at);
          return { serials: page.items.map((item) => item.serial), total: await page.countTotal() };
        };
        expect(await serials({ spiffeIdPrefix: prefix })).toEqual({ serials: [dns, plain, revoked], total: 3 });
        expect(await serials({ spiffeIdPrefix: `${prefix}%` })).toEqual({ serials: [], total: 0 });
        expect(await serials({ dnsName: "www.filter.test" })).toEqual({ serials: [dns], total: 1 });
        expect(await serials({ serial: plain })).toEqual({ serials: [plain], total: 1 });
        expect(await serials({ spiffeIdPrefix: prefix, status: "REVOKED" })).toEqual({ serials: [revoked], total: 1 });
        expect(await serials({ spiffeIdPrefix: prefix, status: "VALID" })).toEqual({ serials: [dns, plain], total: 2 });
        expect(await serials({ spiffeIdPrefix: prefix, status: "EXPIRED" }, new Date(NOW.getTime() + 7_200_000))).toEqual({ serials: [dns, plain], total: 2 });
        expect(await serials({ spiffeIdPrefix: prefix, issuedAfter: new Date(NOW.getTime() + 1) })).toEqual({ serials: [], total: 0 });
        expect(await serials({ spiffeIdPrefix: prefix, issuedBefore: new Date(NOW.getTime() + 1) })).toEqual({ serials: [dns, plain, revoked], total: 3 });
        expect(await serials({ spiffeIdPrefix: prefix, expiresBefore: new Date(NOW.getTime() + 3_600_001) })).toEqual({ serials: [dns, plain, revoked], total: 3 });
      });

      it("refuses a cursor it did not hand out", async () => {
        await expect(a.ledger.list({}, 10, "bm90LWEtY3Vyc29y", NOW)).rejects.toThrow(BadUserInputError);
      });
    });
  });
}
