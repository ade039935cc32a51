import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { AnchorageError, RateLimitedError, UnauthenticatedError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { Services } from "../graphql/context.js";
import type { AnchorageYoga } from "../graphql/yoga.js";
import { ANONYMOUS, type Principal } from "../policy/principal.js";
import { BodyTooLargeError, readBody } from "./body.js";
import { exportCertificates, exportLogEntries } from "./export.js";

export interface TlsMaterial {
  readonly keyPem: string;
  /** The server certificate followed by its chain, PEM. */
  readonly certificateChainPem: string;
}

function sendGraphQLError(response: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ errors: [{ message, extensions: { code } }] });
  response.writeHead(status, { "content-type": "application/graphql-response+json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  response.end(body);
}

/** A whole request refused for a rate limit: 429 with the hint in both `Retry-After` and the error. */
function sendRateLimited(response: ServerResponse, error: RateLimitedError): void {
  const body = JSON.stringify({ errors: [{ message: error.message, extensions: { code: error.code, retryAfterSeconds: error.retryAfterSeconds } }] });
  response.writeHead(429, {
    "content-type": "application/graphql-response+json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "retry-after": String(error.retryAfterSeconds),
  });
  response.end(body);
}

/** Relays a subscription's Server-Sent Events as yoga produces them, one write per event. */
async function streamEvents(answer: Response, response: ServerResponse, disconnected: AbortSignal): Promise<void> {
  const outgoing: Record<string, string> = {};
  answer.headers.forEach((value, name) => {
    outgoing[name] = value;
  });
  response.writeHead(answer.status, { ...outgoing, "cache-control": "no-store", "x-accel-buffering": "no" });
  response.flushHeaders();
  const reader = (answer.body as ReadableStream<Uint8Array>).getReader();
  disconnected.addEventListener("abort", () => void reader.cancel().catch(() => undefined), { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || response.destroyed) break;
      response.write(value);
    }
  } finally {
    response.end();
  }
}

type Exporter = (response: ServerResponse, url: URL, services: Services, principal: Principal) => Promise<void>;

/** Streaming exports beside /graphql: same credentials, no GraphQL (a result set that large is a file). */
const EXPORTS: Record<string, Exporter> = {
  "/export/certificates": exportCertificates,
  "/log/entries": exportLogEntries,
};

const HTTP_STATUS: Partial<Record<string, number>> = { UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404 };

async function principalOf(request: IncomingMessage, services: Services, remoteAddress: string | undefined): Promise<Principal> {
  const header = request.headers.authorization;
  if (header === undefined) return ANONYMOUS;
  const match = /^Bearer ([A-Za-z0-9_-]{1,200})$/.exec(header);
  if (!match) throw new UnauthenticatedError("the Authorization header must be 'Bearer <API key>'");
  return services.apiKeys.authenticate(match[1] as string, remoteAddress);
}

/**
 * The HTTPS listener of the GraphQL API. Client certificates are requested but optional (renewals will
 * authenticate with them); bodies are bounded before yoga sees them; API keys are resolved to a principal
 * here, once per request.
 */
export function createGraphQLListener(options: {
  readonly yoga: AnchorageYoga;
  readonly services: Services;
  readonly tls: TlsMaterial;
  readonly clientCaPem: string;
  readonly maxRequestBytes: number;
  readonly logger: Logger;
}): Server {
  const { yoga, services, maxRequestBytes, logger } = options;

  /**
   * The caller's principal, once its credential and the rate limits let the request in; otherwise the refusal
   * has been sent and the result is undefined.
   */
  const admit = async (request: IncomingMessage, response: ServerResponse, remoteAddress: string | undefined): Promise<Principal | undefined> => {
    // Judged before this request's own credential is tried, so that its failure does not refuse itself.
    const addressRefusal = await services.rateLimits.addressRefusal(remoteAddress);
    let principal: Principal;
    try {
      principal = await principalOf(request, services, remoteAddress);
    } catch (error) {
      if (addressRefusal) {
        sendRateLimited(response, addressRefusal);
        return undefined;
      }
      if (error instanceof AnchorageError) {
        sendGraphQLError(response, 401, error.code, error.message);
        return undefined;
      }
      throw error;
    }
    // A good API key is limited by its own allowance, not by the address it comes from.
    if (principal.kind === "apiKey") {
      try {
        await services.rateLimits.takeApiKeyRequest(principal.id);
      } catch (error) {
        if (!(error instanceof RateLimitedError)) throw error;
        sendRateLimited(response, error);
        return undefined;
      }
    } else if (addressRefusal) {
      sendRateLimited(response, addressRefusal);
      return undefined;
    }
    return principal;
  };

  const serveExport = async (request: IncomingMessage, response: ServerResponse, url: URL, exporter: Exporter): Promise<void> => {
    if (request.method !== "GET") {
      response.writeHead(405, { allow: "GET", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    const principal = await admit(request, response, request.socket.remoteAddress);
    if (!principal) return;
    try {
      await exporter(response, url, services, principal);
    } catch (error) {
      if (!(error instanceof AnchorageError) || response.headersSent) throw error;
      sendGraphQLError(response, HTTP_STATUS[error.code] ?? 400, error.code, error.message);
    }
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? "/", "https://anchorage.invalid");
    const exporter = EXPORTS[url.pathname];
    if (exporter) {
      await serveExport(request, response, url, exporter);
      return;
    }
    if (url.pathname !== "/graphql") {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    const remoteAddress = request.socket.remoteAddress;
    let body: Buffer | undefined;
    if (request.method === "POST") {
      try {
        body = await readBody(request, maxRequestBytes);
      } catch (error) {
        if (error instanceof BodyTooLargeError) {
          sendGraphQLError(response, 413, "BAD_USER_INPUT", `the request body exceeds the limit of ${maxRequestBytes} bytes`);
          return;
        }
        throw error;
      }
    }
    const principal = await admit(request, response, remoteAddress);
    if (!principal) return;
    const headers = new Headers();
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value === "string") headers.set(name, value);
    }
    // Ends a subscription's event stream when the client goes away. Only then: aborting costs a DOMException
    // with its stack, which every ordinary request would otherwise pay once its response has been sent.
    const disconnected = new AbortController();
    response.once("close", () => {
      if (!response.writableFinished) disconnected.abort();
    });
    // yoga builds the Request with its own fetch implementation, which is much cheaper than the global one.
    const answer = await yoga.fetch(
      url.href,
      { method: request.method ?? "GET", headers, signal: disconnected.signal, ...(body ? { body: new Uint8Array(body) } : {}) },
      { services, principal, remoteAddress, clientCertificate: presentedPeerCertificate(request) },
    );
    if (answer.headers.get("content-type")?.startsWith("text/event-stream") && answer.body) {
      await streamEvents(answer, response, disconnected.signal);
      return;
    }
    const payload = Buffer.from(await answer.arrayBuffer());
    const outgoing: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      outgoing[name] = value;
    });
    outgoing["content-length"] = String(payload.length);
    response.writeHead(answer.status, outgoing);
    response.end(payload);
  };

  const server = createServer(
    {
      key: options.tls.keyPem,
      cert: options.tls.certificateChainPem,
      ca: options.clientCaPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
    },
    (request, response) => {
      handle(request, response).catch((error: unknown) => {
        logger.error({ err: error }, "GraphQL request failed");
        if (!response.headersSent) sendGraphQLError(response, 500, "INTERNAL", "internal error");
        else response.destroy();
      });
    },
  );
  server.keepAliveTimeout = 65_000;
  return server;
}

/**
 * The client certificate of a TLS request, if one was presented, whether or not the TLS stack trusts its
 * chain: the handshake proved the key, and the domain decides about the certificate (it must be one we issued,
 * and an expired one may still renew within the grace window).
 */
export function presentedPeerCertificate(request: IncomingMessage): Buffer | undefined {
  const peer = (request.socket as TLSSocket).getPeerCertificate();
  return peer && "raw" in peer && Buffer.isBuffer(peer.raw) ? peer.raw : undefined;
}
