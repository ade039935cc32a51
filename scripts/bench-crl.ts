/**
 * CRL building at scale: seeds a fresh SQLite file with N revoked, unexpired certificates of one
 * intermediate whose key lives in a SoftHSM token, then times one CRL build (read the entries, encode,
 * sign through the HSM, verify, store) and reports the peak memory of the process.
 *
 *   npx tsx scripts/bench-crl.ts [--entries 1000000]
 *
 * Needs SoftHSM2 (scripts/ensure-system-deps.sh). Everything lives in a temporary folder, removed at the end.
 */
import "reflect-metadata";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resourceUsage } from "node:process";
import { parseArgs } from "node:util";
import { silentLogger } from "../src/common/logger.js";
import { systemClock } from "../src/common/clock.js";
import { authorityRecordOf } from "../src/ca/authority-service.js";
import { createIntermediateCsr, createRootCertificate, signIntermediate } from "../src/ca/ceremony.js";
import { Issuer, authorityUrls } from "../src/ca/issuer.js";
import { generateSerial } from "../src/ca/serial.js";
import { CrlPublisher } from "../src/revocation/crl-publisher.js";
import { Pkcs11KeyStore } from "../src/signer/pkcs11/pkcs11-key-store.js";
import { SqliteAuditEventRepository } from "../src/store/audit-event-repository.js";
import { SqliteAuthorityRepository } from "../src/store/authority-repository.js";
import { SqliteCrlRepository } from "../src/store/crl-repository.js";
import { openDatabase } from "../src/store/database.js";
import { SqliteRevocationRepository } from "../src/store/revocation-repository.js";
import { BENCH_PKCS11_MODULE, initScratchToken } from "./lib/scratch-token.js";

const { values } = parseArgs({ options: { entries: { type: "string", default: "1000000" } } });
const entries = Number(values.entries);

const dir = mkdtempSync(join(tmpdir(), "anchorage-bench-crl-"));
try {
  const token = initScratchToken(dir);
  const store = await Pkcs11KeyStore.open({ modulePath: BENCH_PKCS11_MODULE, ...token });
  const now = new Date();
  const rootSigner = await store.generateKey("root", { type: "ec", curve: "P-384" });
  const rootDer = await createRootCertificate({ signer: rootSigner, subject: { commonName: "Bench Root" }, notBefore: new Date(now.getTime() - 3_600_000) });
  const signer = await store.generateKey("intermediate", { type: "ec", curve: "P-256" });
  const csr = await createIntermediateCsr({ signer, subject: { commonName: "Bench Intermediate" } });
  const intermediateDer = await signIntermediate({ rootSigner, rootCertificateDer: rootDer, csrDer: csr, notBefore: new Date(now.getTime() - 3_600_000), validityDays: 365 });

  const db = openDatabase(join(dir, "anchorage.db"));
  const authorities = new SqliteAuthorityRepository(db);
  const root = authorityRecordOf(rootDer, { kind: "root", status: "active", keyLabel: null, parentId: null, createdAt: now });
  const intermediate = authorityRecordOf(intermediateDer, { kind: "intermediate", status: "active", keyLabel: "intermediate", parentId: root.id, createdAt: now });
  await authorities.insert(root);
  await authorities.insert(intermediate);

  const seedStart = performance.now();
  const insert = db.prepare(
    `INSERT INTO certificates (serial, authority_id, state, spiffe_id, dns_names, not_before, not_after, key_type, requester, tbs_der, prepared_at, revoked_at, revocation_reason)
     VALUES (?, ?, 'issued', 'spiffe://bench/w', '[]', ?, ?, 'P-256', 'bench', x'00', ?, ?, ?)`,
  );
  const reasons = ["UNSPECIFIED", "KEY_COMPROMISE", "SUPERSEDED", "CESSATION_OF_OPERATION"];
  const seed = db.transaction((count: number) => {
    for (let index = 0; index < count; index++) {
      insert.run(generateSerial().toString("hex"), intermediate.id, now.getTime() - 60_000, now.getTime() + 3_600_000, now.getTime(), now.getTime() - index, reasons[index % reasons.length]);
    }
  });
  for (let done = 0; done < entries; done += 100_000) seed(Math.min(100_000, entries - done));
  console.log(`seeded ${entries} revoked certificates in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);

  const issuer = new Issuer(intermediate, await store.openKey("intermediate"), [intermediateDer], authorityUrls("http://127.0.0.1", intermediate.id));
  const crls = new SqliteCrlRepository(db);
  const publisher = new CrlPublisher({
    repository: new SqliteRevocationRepository(db, new SqliteAuditEventRepository(db)),
    crls,
    issuers: () => [issuer],
    clock: systemClock,
    logger: silentLogger,
    settings: { validitySeconds: 86_400 },
  });
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  const buildStart = performance.now();
  await publisher.rebuild(intermediate.id);
  const seconds = (performance.now() - buildStart) / 1000;
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const crl = await crls.get(intermediate.id);
  const crlPath = join(dir, "bench.crl");
  writeFileSync(crlPath, crl?.der ?? Buffer.alloc(0));
  const listed = execFileSync("openssl", ["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text"], { maxBuffer: 1 << 30 })
    .toString()
    .split("\n")
    .filter((line) => line.includes("Serial Number:")).length;
  console.log(
    `CRL with ${listed} entries (${((crl?.der.length ?? 0) / 1e6).toFixed(1)} MB) built, signed through SoftHSM and stored in ${seconds.toFixed(2)} s; ` +
      `process RSS ${(rssBefore / 1e6).toFixed(0)} MB before, peak ${(peakRss / 1e6).toFixed(0)} MB (max RSS over the run ${(resourceUsage().maxRSS / 1e3).toFixed(0)} MB)`,
  );
  db.close();
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
