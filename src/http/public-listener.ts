import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AuthorityService } from "../ca/authority-service.js";
import { spiffeBundleJson } from "../ca/spiffe-bundle.js";
import type { Logger } from "../common/logger.js";
import { certificateToPem } from "../common/pem.js";
import type { CrlRepository } from "../revocation/ports.js";

export interface Readiness {
  readonly database: boolean;
  readonly hsm: boolean;
}

const AUTHORITY_FILE = /^\/(ca|crl)\/([0-9a-f]{2,128})\.(crt|crl)$/;

function send(response: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), ...extra });
  response.end(body);
}

/**
 * The plain-HTTP listener for public material: CA certificates (AIA caIssuers), CRLs, the trust bundle
 * and health probes. Nothing here needs or accepts credentials, and nothing here signs.
 */
export function createPublicListener(options: {
  readonly authorities: AuthorityService;
  readonly crls: CrlRepository;
  readonly readiness: () => Promise<Readiness>;
  readonly logger: Logger;
}): Server {
  const { authorities, crls, readiness, logger } = options;

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      send(response, 405, "text/plain", "method not allowed\n", { allow: "GET, HEAD" });
      return;
    }
    const path = new URL(request.url ?? "/", "http://anchorage.invalid").pathname;
    if (path === "/healthz") {
      send(response, 200, "application/json", '{"status":"ok"}\n');
      return;
    }
    if (path === "/readyz") {
      const state = await readiness();
      const ready = state.database && state.hsm;
      send(response, ready ? 200 : 503, "application/json", `${JSON.stringify({ status: ready ? "ready" : "unavailable", ...state })}\n`);
      return;
    }
    if (path === "/bundle.pem") {
      const bundle = authorities.trustBundle();
      const pem = [...bundle.roots, ...bundle.intermediates].map((ca) => certificateToPem(ca.certificateDer)).join("");
      send(response, 200, "application/x-pem-file", pem, { "cache-control": "max-age=60" });
      return;
    }
    if (path === "/bundle") {
      send(response, 200, "application/json", spiffeBundleJson(authorities.trustBundle()), { "cache-control": "max-age=60" });
      return;
    }
    const match = AUTHORITY_FILE.exec(path);
    if (match && match[1] === "ca" && match[3] === "crt") {
      const authority = authorities.get(match[2] as string);
      if (authority) {
        send(response, 200, "application/pkix-cert", authority.certificateDer, { "cache-control": "max-age=3600" });
        return;
      }
    }
    if (match && match[1] === "crl" && match[3] === "crl") {
      const crl = crls.get(match[2] as string);
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

  return createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      logger.error({ err: error }, "public request failed");
      if (!response.headersSent) send(response, 500, "text/plain", "internal error\n");
      else response.destroy();
    });
  });
}
