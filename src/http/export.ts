import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { certificateStatus, type CertificateFilter, type CertificateRecord, type CertificateStatus } from "../ca/model.js";
import { BadUserInputError } from "../common/errors.js";
import type { Services } from "../graphql/context.js";
import { parseTimeInput } from "../graphql/inputs.js";
import type { Principal } from "../policy/principal.js";

const LINES_PER_WRITE = 500;

/** Writes lines in batches, waiting for the socket to drain so a slow reader never makes us buffer the history. */
async function streamLines(response: ServerResponse, lines: AsyncIterable<string>): Promise<void> {
  let batch: string[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const chunk = batch.join("");
    batch = [];
    if (!response.write(chunk)) await once(response, "drain");
  };
  for await (const line of lines) {
    if (response.destroyed) return;
    batch.push(line);
    if (batch.length >= LINES_PER_WRITE) await flush();
  }
  await flush();
  response.end();
}

const STATUSES = new Set<string>(["VALID", "EXPIRED", "REVOKED"]);

function filterFromQuery(query: URLSearchParams): CertificateFilter {
  const text = (name: string): string | undefined => query.get(name) ?? undefined;
  const time = (name: string): Date | undefined => {
    const value = query.get(name);
    return value === null ? undefined : parseTimeInput(value, name);
  };
  const status = text("status");
  if (status !== undefined && !STATUSES.has(status)) throw new BadUserInputError("status must be VALID, EXPIRED or REVOKED");
  const filter: Record<string, unknown> = {
    serial: text("serial"),
    spiffeId: text("spiffeId"),
    spiffeIdPrefix: text("spiffeIdPrefix"),
    dnsName: text("dnsName"),
    authorityId: text("issuerId"),
    requester: text("requester"),
    status: status as CertificateStatus | undefined,
    issuedAfter: time("issuedAfter"),
    issuedBefore: time("issuedBefore"),
    expiresAfter: time("expiresAfter"),
    expiresBefore: time("expiresBefore"),
  };
  for (const key of Object.keys(filter)) if (filter[key] === undefined) delete filter[key];
  return filter as CertificateFilter;
}

const CSV_COLUMNS = [
  "serial",
  "issuerId",
  "spiffeId",
  "dnsNames",
  "notBefore",
  "notAfter",
  "issuedAt",
  "status",
  "revokedAt",
  "revocationReason",
  "requester",
  "keyType",
  "fingerprintSha256",
] as const;

function exportFields(record: CertificateRecord, now: Date): Record<(typeof CSV_COLUMNS)[number], string | null> & { dnsNames: string } {
  return {
    serial: record.serial,
    issuerId: record.authorityId,
    spiffeId: record.spiffeId,
    dnsNames: record.dnsNames.join(" "),
    notBefore: record.notBefore.toISOString(),
    notAfter: record.notAfter.toISOString(),
    issuedAt: record.issuedAt.toISOString(),
    status: certificateStatus(record, now),
    revokedAt: record.revokedAt?.toISOString() ?? null,
    revocationReason: record.revocationReason,
    requester: record.requester,
    keyType: record.keyType,
    fingerprintSha256: record.fingerprintSha256,
  };
}

/** RFC 4180 field: quoted when it holds a comma, quote or line break; a leading formula character is neutralised. */
function csvField(value: string | null): string {
  if (value === null) return "";
  const safe = /^[=+\-@]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

async function* certificateLines(records: AsyncIterable<CertificateRecord>, format: "ndjson" | "csv", now: Date): AsyncGenerator<string> {
  if (format === "csv") yield `${CSV_COLUMNS.join(",")}\r\n`;
  for await (const record of records) {
    const fields = exportFields(record, now);
    if (format === "csv") {
      yield `${CSV_COLUMNS.map((column) => csvField(fields[column])).join(",")}\r\n`;
    } else {
      yield `${JSON.stringify({ ...fields, dnsNames: record.dnsNames, certificate: record.der.toString("base64") })}\n`;
    }
  }
}

/**
 * `GET /export/certificates?format=ndjson|csv&<filter>`: the issuance history, streamed. Filters are the
 * GraphQL `CertificateFilter` fields as query parameters.
 */
export async function exportCertificates(response: ServerResponse, url: URL, services: Services, principal: Principal): Promise<void> {
  const format = url.searchParams.get("format") ?? "ndjson";
  if (format !== "ndjson" && format !== "csv") throw new BadUserInputError("format must be ndjson or csv");
  const records = services.certificates.export(principal, filterFromQuery(url.searchParams));
  response.writeHead(200, {
    "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
    "cache-control": "no-store",
  });
  await streamLines(response, certificateLines(records, format, services.certificates.now()));
}

function nonNegativeInteger(value: string | null, name: string): number | undefined {
  if (value === null) return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new BadUserInputError(`${name} must be a non-negative integer`);
  return Number(value);
}

/**
 * `GET /log/entries?start=&end=`: the leaf data of the transparency log, one line per leaf from `start`
 * (default 0) up to `end` (default: the latest checkpoint's size), exactly the bytes that are hashed. A
 * leaf whose row is gone is the line `null`. A verifier recomputes the tree from these lines.
 */
export async function exportLogEntries(response: ServerResponse, url: URL, services: Services, principal: Principal): Promise<void> {
  const start = nonNegativeInteger(url.searchParams.get("start"), "start") ?? 0;
  const end = nonNegativeInteger(url.searchParams.get("end"), "end");
  const entries = await services.transparencyLog.entries(principal, start, end);
  response.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
  await streamLines(
    response,
    (async function* () {
      for await (const { entry } of entries) yield `${entry ? entry.toString("utf8") : "null"}\n`;
    })(),
  );
}
