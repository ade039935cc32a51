/**
 * The authority and trust-bundle consumer repositories, the same tests on every storage engine: activation
 * swaps the active intermediate in one step (also when two nodes activate at once), the trust bundle version
 * moves exactly when the set of published authorities changes, and a consumer's acknowledged version never
 * goes down, however acknowledgements from several nodes interleave.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteAuthorityRepository, SqliteTrustBundleConsumerRepository } from "../../src/store/authority-repository.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { PostgresAuthorityRepository, PostgresTrustBundleConsumerRepository } from "../../src/store/postgres/authority-repository.js";
import { closeHandle, insertCertificate, issuedCertificate, openSecondHandle, type EngineHandle } from "../support/contract-store.js";
import { placeholderAuthority } from "../support/scratch-store.js";
import { STORE_ENGINES, type StoreEngine } from "../support/store-engines.js";

const NOW = new Date("2026-03-01T12:00:00.000Z");
const later = (seconds: number): Date => new Date(NOW.getTime() + seconds * 1000);

type Authorities = SqliteAuthorityRepository | PostgresAuthorityRepository;
type Consumers = SqliteTrustBundleConsumerRepository | PostgresTrustBundleConsumerRepository;

function repositoriesOf(db: EngineHandle): { authorities: Authorities; consumers: Consumers } {
  return db instanceof PostgresDatabase
    ? { authorities: new PostgresAuthorityRepository(db), consumers: new PostgresTrustBundleConsumerRepository(db) }
    : { authorities: new SqliteAuthorityRepository(db), consumers: new SqliteTrustBundleConsumerRepository(db) };
}

for (const factory of STORE_ENGINES) {
  describe.skipIf(!factory.available)(`authority repositories on ${factory.kind}`, () => {
    let engine: StoreEngine;
    let other: EngineHandle;
    let authorities: Authorities;
    let consumers: Consumers;
    /** The same store through another node's handle. */
    let otherNode: { authorities: Authorities; consumers: Consumers };

    const intermediateStatuses = async (): Promise<Record<string, string>> =>
      Object.fromEntries((await authorities.list()).filter((authority) => authority.kind === "intermediate").map((authority) => [authority.id, authority.status]));

    beforeAll(async () => {
      engine = await factory.open();
      other = await openSecondHandle(engine);
      ({ authorities, consumers } = repositoriesOf(engine.db));
      otherNode = repositoriesOf(other);
    });

    afterAll(async () => {
      if (other) await closeHandle(other);
      await engine?.close();
    });

    it("stores authorities and reads them back field for field, in creation order", async () => {
      expect(await authorities.bundleSequence()).toBe(0);
      const root = placeholderAuthority("root", "root", "active", NOW);
      const first = placeholderAuthority("int-1", "intermediate", "active", later(1));
      await authorities.insert(root);
      await authorities.insert(first);
      expect(await authorities.get("int-1")).toEqual(first);
      expect(await authorities.get("missing")).toBeUndefined();
      expect((await authorities.list()).map((authority) => authority.id)).toEqual(["root", "int-1"]);
      expect(await authorities.firstBundleSequenceContaining("root")).toBe(1);
      expect(await authorities.firstBundleSequenceContaining("int-1")).toBe(2);
      expect(await authorities.bundleSequence()).toBe(2);
    });

    it("activates an intermediate and publishes the one it replaces in one step, without a new bundle version", async () => {
      await authorities.insert(placeholderAuthority("int-2", "intermediate", "published", later(2)));
      expect(await authorities.bundleSequence()).toBe(3);
      expect(await authorities.firstBundleSequenceContaining("int-2")).toBe(3);

      await authorities.activate("int-2");
      expect(await intermediateStatuses()).toEqual({ "int-1": "published", "int-2": "active" });
      // The same authorities are published before and after: the bundle did not change.
      expect(await authorities.bundleSequence()).toBe(3);
      // Activating the active one changes nothing.
      await authorities.activate("int-2");
      expect(await intermediateStatuses()).toEqual({ "int-1": "published", "int-2": "active" });
    });

    it("moves the bundle version when an authority is retired, and remembers where each one first appeared", async () => {
      await authorities.setStatus("int-1", "retired");
      expect((await authorities.get("int-1"))?.status).toBe("retired");
      expect(await authorities.bundleSequence()).toBe(4);
      expect(await authorities.firstBundleSequenceContaining("int-1")).toBe(2);
      expect(await authorities.firstBundleSequenceContaining("int-2")).toBe(3);
      expect(await authorities.firstBundleSequenceContaining("never-published")).toBeUndefined();
    });

    it("leaves exactly one active intermediate when two nodes activate different ones at once", async () => {
      await authorities.insert(placeholderAuthority("int-3", "intermediate", "published", later(3)));
      await authorities.insert(placeholderAuthority("int-4", "intermediate", "published", later(4)));
      const sequence = await authorities.bundleSequence();
      await Promise.all([authorities.activate("int-3"), otherNode.authorities.activate("int-4")]);
      const statuses = await intermediateStatuses();
      const active = Object.keys(statuses).filter((id) => statuses[id] === "active");
      expect(active).toHaveLength(1);
      expect(["int-3", "int-4"]).toContain(active[0]);
      expect(statuses).toMatchObject({ "int-1": "retired", "int-2": "published", "int-3": expect.any(String), "int-4": expect.any(String) });
      expect(await authorities.bundleSequence()).toBe(sequence);
    });

    it("reports the latest expiry of an authority's workload certificates, ignoring failed ones and responder certificates", async () => {
      expect(await authorities.lastLeafExpiry("int-2")).toBeUndefined();
      await insertCertificate(engine.db, issuedCertificate(1, "int-2", NOW, { notAfter: later(3600) }));
      await insertCertificate(engine.db, issuedCertificate(2, "int-2", NOW, { notAfter: later(7200) }));
      await insertCertificate(engine.db, issuedCertificate(3, "int-2", NOW, { notAfter: later(99_999), state: "failed" }));
      await insertCertificate(engine.db, issuedCertificate(4, "int-2", NOW, { notAfter: later(88_888), profile: "ocsp-responder", spiffeId: "" }));
      // A reservation not yet signed counts: the certificate may still be issued.
      await insertCertificate(engine.db, issuedCertificate(5, "int-2", NOW, { notAfter: later(9000), state: "prepared" }));
      await insertCertificate(engine.db, issuedCertificate(6, "int-1", NOW, { notAfter: later(50_000) }));
      expect(await authorities.lastLeafExpiry("int-2")).toEqual(later(9000));
    });

    describe("trust bundle consumers", () => {
      it("registers a consumer, and rebinding it keeps its acknowledged version and first-seen time", async () => {
        const registered = await consumers.register({ consumerId: "istiod", spiffeId: "spiffe://anchorage.test/istiod", registeredBy: "apikey:a" }, NOW);
        expect(registered).toEqual({
          consumerId: "istiod",
          spiffeId: "spiffe://anchorage.test/istiod",
          acknowledgedSequence: 0,
          acknowledgedAt: null,
          firstSeenAt: NOW,
          registeredAt: NOW,
          registeredBy: "apikey:a",
        });
        expect(await consumers.acknowledge("istiod", 3, later(10))).toMatchObject({ acknowledgedSequence: 3, acknowledgedAt: later(10) });
        const rebound = await consumers.register({ consumerId: "istiod", spiffeId: null, registeredBy: "apikey:b" }, later(20));
        expect(rebound).toEqual({
          consumerId: "istiod",
          spiffeId: null,
          acknowledgedSequence: 3,
          acknowledgedAt: later(10),
          firstSeenAt: NOW,
          registeredAt: later(20),
          registeredBy: "apikey:b",
        });
        expect(await consumers.get("istiod")).toEqual(rebound);
      });

      it("never lowers an acknowledged version, and never creates a consumer by acknowledging", async () => {
        await consumers.register({ consumerId: "linkerd", spiffeId: null, registeredBy: "apikey:a" }, NOW);
        expect(await consumers.acknowledge("linkerd", 5, later(1))).toMatchObject({ acknowledgedSequence: 5, acknowledgedAt: later(1) });
        // An older version acknowledged late (a slow node, a replayed request) changes nothing, not even the time.
        expect(await consumers.acknowledge("linkerd", 2, later(2))).toMatchObject({ acknowledgedSequence: 5, acknowledgedAt: later(1) });
        expect(await consumers.acknowledge("linkerd", 5, later(3))).toMatchObject({ acknowledgedSequence: 5, acknowledgedAt: later(1) });
        expect(await consumers.acknowledge("linkerd", 6, later(4))).toMatchObject({ acknowledgedSequence: 6, acknowledgedAt: later(4) });
        expect(await consumers.acknowledge("stranger", 9, later(5))).toBeUndefined();
        expect(await consumers.get("stranger")).toBeUndefined();
      });

      it("keeps the highest of many acknowledgements arriving at once through two nodes", async () => {
        await consumers.register({ consumerId: "racing", spiffeId: null, registeredBy: "apikey:a" }, NOW);
        const sequences = Array.from({ length: 40 }, (_, i) => ((i * 17) % 40) + 1);
        const results = await Promise.all(
          sequences.map((sequence, i) => (i % 2 === 0 ? consumers : otherNode.consumers).acknowledge("racing", sequence, later(sequence))),
        );
        // Each caller is told at least what it acknowledged: nobody sees the stored version below its own.
        results.forEach((result, i) => expect(result?.acknowledgedSequence).toBeGreaterThanOrEqual(sequences[i] as number));
        expect(await consumers.get("racing")).toMatchObject({ acknowledgedSequence: 40, acknowledgedAt: later(40) });
      });

      it("lists consumers by id, counts them and unregisters them", async () => {
        expect((await consumers.list()).map((consumer) => consumer.consumerId)).toEqual(["istiod", "linkerd", "racing"]);
        expect(await consumers.count()).toBe(3);
        expect(await consumers.unregister("linkerd")).toBe(true);
        expect(await consumers.unregister("linkerd")).toBe(false);
        expect(await consumers.get("linkerd")).toBeUndefined();
        expect(await consumers.count()).toBe(2);
      });
    });
  });
}
