/**
 * The PostgreSQL change feed against a real server: commits made through one node's connections reach
 * another node's counters per topic (and the OCSP repository's external change counter), certificate
 * issuance and rolled-back transactions notify nothing, and after its connection is killed the feed
 * reconnects, counts everything as changed, and keeps delivering.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import { PostgresCertificateStore } from "../../src/store/postgres/certificate-store.js";
import { CHANGE_TOPICS, PostgresChangeFeed, type ChangeTopic } from "../../src/store/postgres/change-feed.js";
import { PostgresCrlRepository } from "../../src/store/postgres/crl-repository.js";
import { PostgresDatabase } from "../../src/store/postgres/database.js";
import { PostgresOcspRepository } from "../../src/store/postgres/ocsp-repository.js";
import { PostgresRevocationRepository } from "../../src/store/postgres/revocation-repository.js";
import { createScratchDatabase, postgresSkipReason, requirePostgres, type ScratchDatabase } from "../support/postgres.js";
import { placeholderAuthority, preparedIssuance, RESERVATION_AUDIT } from "../support/scratch-store.js";

const serverUrl = requirePostgres();
const NOW = new Date(Date.UTC(2026, 10, 22, 12));
const FEED_NAME = `anchorage-feed-test-${randomBytes(4).toString("hex")}`;
const revokedEvent = (serial: string): AuditEvent => ({ type: "certificate.revoked", actor: "apikey:admin", outcome: "success", subject: serial });

/** Polls until `condition` holds, failing after a bounded wait (a notification that never comes). */
async function eventually(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.skipIf(serverUrl === undefined)(`PostgresChangeFeed${serverUrl === undefined ? ` (${postgresSkipReason})` : ""}`, () => {
  let scratch: ScratchDatabase;
  let writer: PostgresDatabase;
  let reader: PostgresDatabase;
  let feed: PostgresChangeFeed;
  let ledger: PostgresCertificateStore;
  let revocations: PostgresRevocationRepository;
  let ocsp: PostgresOcspRepository;

  const counters = (): Record<ChangeTopic, number> => Object.fromEntries(CHANGE_TOPICS.map((topic) => [topic, feed.counter(topic)])) as Record<ChangeTopic, number>;

  async function insertAuthority(id: string, kind: "root" | "intermediate", status: "active" | "published"): Promise<void> {
    const authority = placeholderAuthority(id, kind, status, NOW);
    await writer.query(
      `INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, parent_id, not_before, not_after, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [id, kind, status, authority.subject, authority.certificateDer, authority.keyLabel, authority.parentId, authority.notBefore.getTime(), authority.notAfter.getTime(), NOW.getTime()],
    );
  }

  async function issue(): Promise<string> {
    const item = preparedIssuance(NOW);
    await ledger.prepare([item], NOW);
    await ledger.complete([{ serial: item.serial, der: randomBytes(30), fingerprintSha256: "ab", audit: { ...RESERVATION_AUDIT, type: "issuance.signed" } }], NOW);
    return item.serial;
  }

  /** A commit on the `ocsp` topic, whose notification arrives after those of every earlier commit. */
  async function marker(): Promise<void> {
    const before = feed.counter("ocsp");
    await writer.query("INSERT INTO ocsp_signers (key_label, authority_id, certificate_der, not_before, not_after, created_at) VALUES ($1, 'ca', '\\x30'::bytea, 0, 1, 0)", [
      `marker-${randomBytes(4).toString("hex")}`,
    ]);
    await eventually(() => feed.counter("ocsp") > before, "the marker's notification");
  }

  beforeAll(async () => {
    scratch = await createScratchDatabase(serverUrl as string);
    writer = await PostgresDatabase.open(scratch.url);
    reader = await PostgresDatabase.open(scratch.url);
    feed = await PostgresChangeFeed.open(scratch.url, { applicationName: FEED_NAME, minReconnectDelayMs: 20, maxReconnectDelayMs: 200 });
    ledger = new PostgresCertificateStore(writer);
    revocations = new PostgresRevocationRepository(writer);
    ocsp = new PostgresOcspRepository(reader, feed);
    await insertAuthority("root", "root", "active");
    await insertAuthority("ca", "intermediate", "active");
  });

  afterAll(async () => {
    await feed?.close();
    await writer?.close().catch(() => undefined);
    await reader?.close().catch(() => undefined);
    await scratch?.drop();
  });

  it("counts a revocation committed through another node, and the OCSP repository's counter follows", async () => {
    const serial = await issue();
    await marker();
    const before = counters();
    const ocspBefore = ocsp.externalChangeCounter();
    await revocations.revoke(serial, "KEY_COMPROMISE", NOW, revokedEvent(serial));
    await eventually(() => feed.counter("revocation") > before.revocation, "the revocation's notification");
    expect(ocsp.externalChangeCounter()).toBeGreaterThan(ocspBefore);
    expect(feed.counter("crl")).toBe(before.crl);
  });

  it("does not count certificate issuance, nor a transaction rolled back", async () => {
    await marker();
    const before = counters();
    await issue();
    const serial = await issue();
    await expect(
      writer.transaction(async (transaction) => {
        await transaction.query("UPDATE certificates SET revoked_at = 1, revocation_reason = 'KEY_COMPROMISE' WHERE serial = $1", [serial]);
        throw new Error("changed my mind");
      }),
    ).rejects.toThrow("changed my mind");
    await marker();
    expect(feed.counter("revocation")).toBe(before.revocation);
    expect(feed.counter("authorities")).toBe(before.authorities);
  });

  it("tells subscribers of authority and trust bundle changes, until they unsubscribe", async () => {
    const heard: ChangeTopic[] = [];
    const unsubscribe = [feed.subscribe("authorities", () => heard.push("authorities")), feed.subscribe("trust_bundle", () => heard.push("trust_bundle"))];
    await insertAuthority("next", "intermediate", "published");
    await eventually(() => heard.includes("authorities") && heard.includes("trust_bundle"), "the authority's notifications");
    for (const stop of unsubscribe) stop();
    const count = heard.length;
    await writer.query("UPDATE authorities SET status = 'retired' WHERE id = 'next'");
    await marker();
    expect(heard).toHaveLength(count);
  });

  it("reconnects after its connection is killed, counts every topic as changed, and keeps delivering", async () => {
    await marker();
    const before = counters();
    const { rows } = await writer.query<{ terminated: boolean }>(
      "SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE application_name = $1",
      [FEED_NAME],
    );
    expect(rows.map((row) => row.terminated)).toEqual([true]);
    await eventually(() => CHANGE_TOPICS.every((topic) => feed.counter(topic) > before[topic]) && feed.listening, "the reconnection");

    const afterReconnect = feed.counter("crl");
    await new PostgresCrlRepository(writer).save({ authorityId: "ca", crlNumber: 1n, der: Buffer.from("crl"), thisUpdate: NOW, nextUpdate: NOW });
    await eventually(() => feed.counter("crl") > afterReconnect, "a notification after the reconnection");
  });
});
