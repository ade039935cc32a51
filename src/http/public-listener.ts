import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AuthorityService } from "../ca/authority-service.js";
import { spiffeBundleJson } from "../ca/spiffe-bundle.js";
import type { Clock } from "../common/clock.js";
import { ocspErrorResponse } from "../revocation/ocsp-codec.js";
import type { OcspAnswer } from "../revocation/ocsp-responder.js";
import { BodyTooLargeError, readBody } from "./body.js";
import { createOcspFrontDoor, type FramedRequest } from "./ocsp-fast-path.js";
import { MAX_OCSP_REQUEST_BYTES, ocspRequestDerOfPath } from "./ocsp-request.js";
import type { Logger } from "../common/logger.js";
import type { Readiness } from "./readiness.js";
import { certificateToPem } from "../common/pem.js";
import type { CrlRepository, StoredCrl } from "../revocation/ports.js";

/** The OCSP side of the listener: one DER request in, one DER response out (never throws). */
export interface OcspEndpoint {
  respond(requestDer: Buffer): Promise<OcspAnswer>;
  /** Changes whenever a stored answer given before may have changed (see OcspResponder.generation). */
  generation(): number;
}

const AUTHORITY_FILE = /^\/(ca|crl)\/([0-9a-f]{2,128})\.(crt|crl)$/;

function send(response: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), ...extra });
  response.end(body);
}

export interface PublicListenerOptions {
  readonly authorities: AuthorityService;
  readonly crls: CrlRepository;
  /** The latest background probe (see ReadinessMonitor): answering /readyz never probes. */
  readonly readiness: () => Readiness;
  readonly ocsp: OcspEndpoint;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** What each side of the listener takes off its connections; the framing tests compare the two. */
export interface ListenerObservers {
  /** Each request the OCSP fast path answers itself. */
  readonly fastPath?: (request: FramedRequest) => void;
  /** Each request node:http hands to the site, before the site sees it. */
  readonly nodeHttp?: (request: IncomingMessage) => void;
}

type OcspHeaders = (answer: OcspAnswer, ifNoneMatch: string | undefined) => { status: 200 | 304; headers: Record<string, string> };

/**
 * The plain-HTTP listener for public material: CA certificates (AIA caIssuers), CRLs, the trust bundle
 * and health probes. Nothing here needs or accepts credentials, and nothing here signs. Plain OCSP requests
 * take a faster path (see ocsp-fast-path.ts); everything else is node:http.
 */
export function createPublicListener(options: PublicListenerOptions, observers: ListenerObservers = {}): ReturnType<typeof createOcspFrontDoor> {
  const { server, headersFor } = publicSite(options, observers);
  const { ocsp, clock } = options;
  return createOcspFrontDoor(server, {
    respond: (der) => ocsp.respond(der),
    generation: () => ocsp.generation(),
    headersFor,
    clock,
    maxRequestBytes: MAX_OCSP_REQUEST_BYTES,
    observe: observers.fastPath,
  });
}

/**
 * The same listener on node:http alone, without the OCSP fast path: what the fast path must be
 * indistinguishable from (the framing tests compare the two).
 */
export function createPublicHttpServer(options: PublicListenerOptions, observers: ListenerObservers = {}): HttpServer {
  return publicSite(options, observers).server;
}

function publicSite(options: PublicListenerOptions, observers: ListenerObservers): { server: HttpServer; headersFor: OcspHeaders } {
  const { authorities, crls, readiness, ocsp, clock, logger } = options;

  const headersFor: OcspHeaders = (answer, ifNoneMatch) => {
    const headers: Record<string, string> = { "content-type": "application/ocsp-response" };
    if (!answer.cacheable) return { status: 200, headers: { ...headers, "cache-control": "no-store" } };
    // RFC 5019 §6: caches may keep the response until nextUpdate; the ETag lets them revalidate cheaply.
    const maxAge = Math.max(0, Math.floor((answer.nextUpdate.getTime() - clock.now().getTime()) / 1000));
    Object.assign(headers, {
      "cache-control": `max-age=${maxAge}, public, no-transform, must-revalidate`,
      "last-modified": answer.thisUpdate.toUTCString(),
      expires: answer.nextUpdate.toUTCString(),
      etag: answer.etag,
    });
    return { status: ifNoneMatch === answer.etag ? 304 : 200, headers };
  };

  const sendOcsp = (request: IncomingMessage, response: ServerResponse, answer: OcspAnswer): void => {
    const ifNoneMatch = request.headers["if-none-match"];
    const { status, headers } = headersFor(answer, typeof ifNoneMatch === "string" ? ifNoneMatch : undefined);
    if (status === 304) {
      response.writeHead(304, headers).end();
      return;
    }
    send(response, 200, headers["content-type"] as string, answer.der, headers);
  };

  // What each CRL was when last read, served while the database cannot be read: a CRL is valid until its
  // nextUpdate wherever it comes from, and relying parties need it most when something is wrong.
  const crlsServed = new Map<string, StoredCrl>();
  const lastKnownCrl = async (authorityId: string): Promise<StoredCrl | undefined> => {
    try {
      const crl = await crls.get(authorityId);
      if (crl) crlsServed.set(authorityId, crl);
      return crl;
    } catch (error) {
      const known = crlsServed.get(authorityId);
      if (!known) throw error;
      logger.warn({ err: error, authorityId }, "CRL served from memory: the database cannot be read");
      return known;
    }
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const rawPath = request.url ?? "/";
    if (rawPath === "/ocsp" || rawPath.startsWith("/ocsp/") || rawPath.startsWith("//ocsp")) {
      await handleOcsp(request, response, rawPath);
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      send(response, 405, "text/plain", "method not allowed\n", { allow: "GET, HEAD" });
      return;
    }
    const path = new URL(rawPath, "http://anchorage.invalid").pathname;
    if (path === "/healthz") {
      send(response, 200, "application/json", '{"status":"ok"}\n');
      return;
    }
    if (path === "/readyz") {
      const state = readiness();
      const ready = state.database && state.hsm;
      send(response, ready ? 200 : 503, "application/json", `${JSON.stringify({ status: ready ? "ready" : "unavailable", ...state })}\n`);
      return;
    }
    if (path === "/bundle.pem") {
      const bundle = await authorities.trustBundle();
      const pem = [...bundle.roots, ...bundle.intermediates].map((ca) => certificateToPem(ca.certificateDer)).join("");
      send(response, 200, "application/x-pem-file", pem, { "cache-control": "max-age=60" });
      return;
    }
    if (path === "/bundle") {
      send(response, 200, "application/json", spiffeBundleJson(await authorities.trustBundle()), { "cache-control": "max-age=60" });
      return;
    }
    const match = AUTHORITY_FILE.exec(path);
    if (match && match[1] === "ca" && match[3] === "crt") {
      const authority = await authorities.get(match[2] as string);
      if (authority) {
        send(response, 200, "application/pkix-cert", authority.certificateDer, { "cache-control": "max-age=3600" });
        return;
      }
    }
    if (match && match[1] === "crl" && match[3] === "crl") {
      const crl = await lastKnownCrl(match[2] as string);
      if (crl) {
        send(response, 200, "application/pkix-crl", crl.der, {
          "last-modified": crl.thisUpdate.toUTCString(),
          expires: crl.nextUpdate.toUTCString(),
        });
        return;
      }
    }
    send(response, 404, "text/plain", "not found\n");
  };

  /** RFC 6960 Appendix A: POST with the DER body, or GET with the base64 DER in the path. */
  const handleOcsp = async (request: IncomingMessage, response: ServerResponse, rawPath: string): Promise<void> => {
    let der: Buffer;
    if (request.method === "POST") {
      const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
      if (type !== "application/ocsp-request") {
        request.resume();
        send(response, 415, "text/plain", "OCSP requests are application/ocsp-request\n");
        return;
      }
      try {
        der = await readBody(request, MAX_OCSP_REQUEST_BYTES);
      } catch (error) {
        if (!(error instanceof BodyTooLargeError)) throw error;
        send(response, 413, "text/plain", `OCSP requests are at most ${MAX_OCSP_REQUEST_BYTES} bytes\n`);
        return;
      }
    } else if (request.method === "GET" || request.method === "HEAD") {
      const fromPath = ocspRequestDerOfPath(rawPath);
      if (fromPath === "missing") {
        send(response, 400, "text/plain", "GET /ocsp/<base64 DER OCSP request>\n");
        return;
      }
      if (fromPath === "malformed") {
        sendOcsp(request, response, { der: ocspErrorResponse("malformedRequest"), cacheable: false });
        return;
      }
      der = fromPath;
    } else {
      send(response, 405, "text/plain", "method not allowed\n", { allow: "GET, POST" });
      return;
    }
    sendOcsp(request, response, await ocsp.respond(der));
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      logger.error({ err: error }, "public request failed");
      if (!response.headersSent) send(response, 500, "text/plain", "internal error\n");
      else response.destroy();
    });
  });
  if (observers.nodeHttp) server.prependListener("request", observers.nodeHttp);
  return { server, headersFor };
}
