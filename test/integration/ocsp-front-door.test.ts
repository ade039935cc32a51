/**
 * The plain-HTTP listener's OCSP fast path, on raw sockets against the real service: plain OCSP requests are
 * answered by it, anything else on the same connection (another endpoint, chunked bodies, HTTP/1.0, duplicate
 * headers) is handed to node:http with its bytes intact, and pipelined requests come back in order.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok } from "../support/graphql.js";
import { makeCsr, requireTools, scratchDir, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

interface RawResponse {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
}

/** Splits a byte stream into HTTP/1.x responses (Content-Length framed, or chunked, or none for 304). */
function parseResponses(data: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let offset = 0;
  while (offset < data.length) {
    const end = data.indexOf("\r\n\r\n", offset);
    if (end === -1) break;
    const [statusLine, ...lines] = data.toString("latin1", offset, end).split("\r\n");
    const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]));
    let bodyStart = end + 4;
    let body: Buffer = Buffer.alloc(0);
    if (headers.get("transfer-encoding") === "chunked") {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = data.indexOf("\r\n", bodyStart);
        const size = Number.parseInt(data.toString("latin1", bodyStart, lineEnd), 16);
        bodyStart = lineEnd + 2;
        if (size === 0) {
          bodyStart += 2;
          break;
        }
        parts.push(data.subarray(bodyStart, bodyStart + size));
        bodyStart += size + 2;
      }
      body = Buffer.concat(parts);
    } else {
      const length = Number(headers.get("content-length") ?? 0);
      body = data.subarray(bodyStart, bodyStart + length);
      bodyStart += length;
    }
    responses.push({ status: Number((statusLine as string).split(" ")[1]), headers, body });
    offset = bodyStart;
  }
  return responses;
}

describe.skipIf(missing !== undefined)(`the OCSP fast path of the plain-HTTP listener${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  const scratch = scratchDir("anchorage-front-door-");
  let requestDer: Buffer;

  /** Writes `payload` on one connection and collects what comes back until `count` responses or the peer closes. */
  function exchange(payload: Buffer | string, count: number): Promise<{ responses: RawResponse[]; closed: boolean }> {
    return new Promise((resolve, reject) => {
      const socket = connect(service.httpPort, "127.0.0.1");
      const chunks: Buffer[] = [];
      let closed = false;
      const finish = () => resolve({ responses: parseResponses(Buffer.concat(chunks)), closed });
      const timer = setTimeout(() => {
        socket.destroy();
        finish();
      }, 5_000);
      socket.on("data", (chunk) => {
        chunks.push(chunk);
        if (parseResponses(Buffer.concat(chunks)).length >= count) {
          clearTimeout(timer);
          socket.destroy();
          finish();
        }
      });
      socket.on("end", () => {
        closed = true;
        clearTimeout(timer);
        finish();
      });
      socket.on("error", reject);
      socket.write(payload);
    });
  }

  const get = (extra = "") => `GET /ocsp/${encodeURIComponent(requestDer.toString("base64"))} HTTP/1.1\r\nHost: ca\r\n${extra}\r\n`;
  const post = (headers: string, body: Buffer) => Buffer.concat([Buffer.from(`POST /ocsp HTTP/1.1\r\nHost: ca\r\n${headers}\r\n`), body]);

  beforeAll(async () => {
    service = await startService();
    const spiffeId = "spiffe://anchorage.test/ns/front/sa/door";
    const token = ok(await service.gql(`mutation ($id: String!) { createEnrollmentToken(input: { spiffeId: $id }) { token } }`, { id: spiffeId }, { bearer: service.adminKey })).createEnrollmentToken.token;
    const { csrPem } = makeCsr({ spiffeId });
    const issued = ok(await service.gql(`mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { certificatePem chainPem } }`, { input: { csr: csrPem, token } })).issueCertificate;
    const out = scratch.file("request.der");
    execFileSync("openssl", ["ocsp", "-issuer", scratch.file("issuer.pem", issued.chainPem), "-cert", scratch.file("leaf.pem", issued.certificatePem), "-no_nonce", "-reqout", out]);
    requestDer = readFileSync(out);
  });

  afterAll(async () => {
    await service?.cleanup();
    scratch.remove();
  });

  it("answers pipelined OCSP requests in order, then hands the connection to node:http for another endpoint", async () => {
    const { responses } = await exchange(get() + get() + "GET /healthz HTTP/1.1\r\nHost: ca\r\n\r\n", 3);
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200]);
    expect(responses[0]?.headers.get("content-type")).toBe("application/ocsp-response");
    expect(responses[0]?.body.equals(responses[1]?.body as Buffer)).toBe(true);
    expect(responses[0]?.headers.get("etag")).toMatch(/^"/);
    expect(responses[2]?.body.toString("utf8")).toBe('{"status":"ok"}\n');
  });

  it("answers a thousand pipelined requests on one connection, far past what it buffers at once", async () => {
    // 1,000 GETs are about 190 KiB: the connection is paused while more than 64 KiB waits, and must resume.
    const { responses } = await exchange(get().repeat(1_000), 1_000);
    expect(responses).toHaveLength(1_000);
    expect(responses.every((response) => response.status === 200 && response.body.equals(responses[0]?.body as Buffer))).toBe(true);
    expect(responses[0]?.headers.get("content-type")).toBe("application/ocsp-response");
  });

  it("gives the same answer by POST, and 304 for a matching If-None-Match", async () => {
    const byPost = await exchange(post(`Content-Type: application/ocsp-request\r\nContent-Length: ${requestDer.length}\r\n`, requestDer), 1);
    const byGet = await exchange(get(), 1);
    expect(byPost.responses[0]?.status).toBe(200);
    expect(byPost.responses[0]?.body.equals(byGet.responses[0]?.body as Buffer)).toBe(true);
    const etag = byGet.responses[0]?.headers.get("etag") as string;
    const revalidated = await exchange(get(`If-None-Match: ${etag}\r\n`), 1);
    expect(revalidated.responses[0]?.status).toBe(304);
    expect(revalidated.responses[0]?.body.length).toBe(0);
  });

  it("leaves chunked bodies, HTTP/1.0 and duplicate Content-Length to node:http, which answers them correctly", async () => {
    const chunked = post("Content-Type: application/ocsp-request\r\nTransfer-Encoding: chunked\r\n", Buffer.concat([Buffer.from(`${requestDer.length.toString(16)}\r\n`), requestDer, Buffer.from("\r\n0\r\n\r\n")]));
    const viaNode = await exchange(chunked, 1);
    expect(viaNode.responses[0]?.status).toBe(200);
    expect(viaNode.responses[0]?.headers.get("content-type")).toBe("application/ocsp-response");

    const old = await exchange(`GET /ocsp/${encodeURIComponent(requestDer.toString("base64"))} HTTP/1.0\r\n\r\n`, 1);
    expect(old.responses[0]?.status).toBe(200);

    const smuggle = post(`Content-Type: application/ocsp-request\r\nContent-Length: ${requestDer.length}\r\nContent-Length: 3\r\n`, requestDer);
    const refused = await exchange(smuggle, 1);
    expect(refused.responses[0]?.status).toBe(400);
  });

  it("leaves heads that can never be plain to node:http at once, which refuses them without waiting for a blank line", async () => {
    const bareLineFeeds = await exchange(`GET /ocsp/${encodeURIComponent(requestDer.toString("base64"))} HTTP/1.1\nHost: ca\n\n`, 1);
    expect(bareLineFeeds.responses[0]?.status).toBe(400);
    const garbage = await exchange("\x16\x03\x01\x00", 1);
    expect(garbage.responses[0]?.status).toBe(400);
  });

  it("closes after the response when asked to", async () => {
    const { responses, closed } = await exchange(get("Connection: close\r\n"), 2);
    expect(responses).toHaveLength(1);
    expect(responses[0]?.headers.get("connection")).toBe("close");
    expect(closed).toBe(true);
  });

  it("reuses complete replies within a second, yet answers a revocation from the first request after it", async () => {
    const spiffeId = "spiffe://anchorage.test/ns/front/sa/revoked";
    const token = ok(await service.gql(`mutation ($id: String!) { createEnrollmentToken(input: { spiffeId: $id }) { token } }`, { id: spiffeId }, { bearer: service.adminKey })).createEnrollmentToken.token;
    const issued = ok(await service.gql(`mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem } }`, { input: { csr: makeCsr({ spiffeId }).csrPem, token } })).issueCertificate;
    const out = scratch.file("revoked-request.der");
    execFileSync("openssl", ["ocsp", "-issuer", scratch.file("revoked-issuer.pem", issued.chainPem), "-cert", scratch.file("revoked-leaf.pem", issued.certificatePem), "-no_nonce", "-reqout", out]);
    const der = readFileSync(out);
    const byGet = `GET /ocsp/${encodeURIComponent(der.toString("base64"))} HTTP/1.1\r\nHost: ca\r\n\r\n`;
    const byPost = post(`Content-Type: application/ocsp-request\r\nContent-Length: ${der.length}\r\n`, der);
    const status = (body: Buffer): string => {
      const text = execFileSync("openssl", ["ocsp", "-respin", scratch.file("answer.der", body), "-resp_text", "-noverify"], { encoding: "utf8" });
      return /Cert Status: (\w+)/.exec(text)?.[1] ?? "none";
    };

    // Several rounds of the same requests on one connection: the later ones come from the reply cache.
    const before = await exchange(byGet + byGet + byGet, 3);
    expect(before.responses.map((response) => status(response.body))).toEqual(["good", "good", "good"]);
    expect((await exchange(Buffer.concat([byPost, byPost]), 2)).responses.map((response) => status(response.body))).toEqual(["good", "good"]);

    ok(await service.gql(`mutation ($serial: String!) { revokeCertificate(input: { serial: $serial, reason: KEY_COMPROMISE }) { serial } }`, { serial: issued.serial }, { bearer: service.adminKey }));
    const after = await exchange(byGet, 1);
    expect(status(after.responses[0]?.body as Buffer)).toBe("revoked");
    expect(after.responses[0]?.headers.get("etag")).not.toBe(before.responses[0]?.headers.get("etag"));
    expect(status((await exchange(byPost, 1)).responses[0]?.body as Buffer)).toBe("revoked");
  });
});
