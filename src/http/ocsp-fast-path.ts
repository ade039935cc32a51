import type { Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import type { Clock } from "../common/clock.js";
import type { OcspAnswer } from "../revocation/ocsp-responder.js";

/** What the fast path needs from the listener: the responder and the RFC 5019 headers of an answer. */
export interface OcspFastPathOptions {
  readonly respond: (requestDer: Buffer) => Promise<OcspAnswer>;
  readonly headersFor: (answer: OcspAnswer, ifNoneMatch: string | undefined) => { status: 200 | 304; headers: Record<string, string> };
  readonly clock: Clock;
  readonly maxRequestBytes: number;
}

const HEAD_END = Buffer.from("\r\n\r\n");
const MAX_HEAD_BYTES = 8 * 1024;
/** Bytes a connection may buffer while a response is being prepared (pipelined requests). */
const MAX_BUFFERED_BYTES = 64 * 1024;
const IDLE_TIMEOUT_MS = 65_000;
const REQUEST_LINE = /^(GET|POST) (\/ocsp(?:\/[A-Za-z0-9+/=%_-]*)?) HTTP\/1\.1$/;
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?[ \t]*$/;

/** A request the fast path serves itself: strictly well-formed, nothing it would have to interpret. */
interface FastRequest {
  readonly headBytes: number;
  readonly bodyBytes: number;
  readonly method: "GET" | "POST";
  readonly target: string;
  readonly ifNoneMatch: string | undefined;
  readonly close: boolean;
}

/**
 * Parses one request head, or says to leave the connection to node:http (`"hand-off"`), or to wait for more
 * bytes (`undefined`). Only the plain cases are accepted — GET or POST of /ocsp over HTTP/1.1, each header once
 * at most, a Content-Length on POST, no Transfer-Encoding, no Expect — so this parser and node's can never
 * disagree about where a request ends: anything else goes to node's parser before a byte of it is consumed.
 */
function parseHead(buffer: Buffer, maxRequestBytes: number): FastRequest | "hand-off" | undefined {
  const end = buffer.indexOf(HEAD_END);
  if (end === -1) return buffer.length > MAX_HEAD_BYTES ? "hand-off" : undefined;
  if (end > MAX_HEAD_BYTES) return "hand-off";
  const lines = buffer.toString("latin1", 0, end).split("\r\n");
  const requestLine = REQUEST_LINE.exec(lines[0] as string);
  if (!requestLine) return "hand-off";
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const header = HEADER_LINE.exec(line);
    if (!header) return "hand-off";
    const name = (header[1] as string).toLowerCase();
    if (headers.has(name)) return "hand-off";
    headers.set(name, header[2] ?? "");
  }
  if (headers.has("transfer-encoding") || headers.has("expect") || headers.has("upgrade")) return "hand-off";
  const method = requestLine[1] as "GET" | "POST";
  const length = headers.get("content-length");
  let bodyBytes = 0;
  if (method === "POST") {
    const type = headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
    if (type !== "application/ocsp-request" || length === undefined || !/^\d{1,6}$/.test(length)) return "hand-off";
    bodyBytes = Number(length);
    if (bodyBytes === 0 || bodyBytes > maxRequestBytes) return "hand-off";
  } else if (length !== undefined && length !== "0") {
    return "hand-off";
  }
  const connection = headers.get("connection")?.toLowerCase() ?? "";
  return {
    headBytes: end + HEAD_END.length,
    bodyBytes,
    method,
    target: requestLine[2] as string,
    ifNoneMatch: headers.get("if-none-match"),
    close: connection.split(",").some((token) => token.trim() === "close"),
  };
}

/** The DER of a GET request's path (RFC 6960 Appendix A), or undefined when it is not plain base64. */
function derOfPath(target: string): Buffer | undefined {
  const encoded = target.replace(/^\/ocsp\/*/, "");
  if (encoded.length === 0) return undefined;
  let base64: string;
  try {
    base64 = decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
  return Buffer.from(base64, base64.includes("-") || base64.includes("_") ? "base64url" : "base64");
}

/**
 * A front door for the plain-HTTP listener that answers well-formed OCSP requests itself, with a minimal
 * HTTP/1.1 reader and writer, and hands every other connection — and any request it does not recognise as
 * plain — to the node:http server behind it, bytes included. OCSP is the one endpoint relying parties hit
 * at volume, and node's general HTTP machinery costs about half of each such request on this path.
 */
export function createOcspFrontDoor(fallback: HttpServer, options: OcspFastPathOptions): Server & { closeIdleConnections(): void } {
  const open = new Set<FastConnection>();
  const server = createServer((socket) => {
    const connection = new FastConnection(socket, fallback, options, () => open.delete(connection));
    open.add(connection);
  }) as Server & { closeIdleConnections(): void };
  server.closeIdleConnections = () => {
    for (const connection of open) connection.closeIfIdle();
    fallback.closeIdleConnections();
  };
  return server;
}

class FastConnection {
  private buffer: Buffer = Buffer.alloc(0);
  private busy = false;
  private handedOff = false;
  private closing = false;
  private readonly onData = (chunk: Buffer): void => {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > MAX_BUFFERED_BYTES) this.socket.pause();
    this.drain();
  };

  constructor(
    private readonly socket: Socket,
    private readonly fallback: HttpServer,
    private readonly options: OcspFastPathOptions,
    private readonly forget: () => void,
  ) {
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on("data", this.onData);
    socket.on("error", () => socket.destroy());
    socket.once("close", forget);
  }

  closeIfIdle(): void {
    if (!this.handedOff && !this.busy && this.buffer.length === 0) this.socket.end();
    this.closing = true;
  }

  private drain(): void {
    while (!this.busy && !this.handedOff && this.buffer.length > 0) {
      const request = parseHead(this.buffer, this.options.maxRequestBytes);
      if (request === undefined) return;
      if (request === "hand-off") {
        this.handOff();
        return;
      }
      if (this.buffer.length < request.headBytes + request.bodyBytes) return;
      const der =
        request.method === "POST"
          ? Buffer.from(this.buffer.subarray(request.headBytes, request.headBytes + request.bodyBytes))
          : derOfPath(request.target);
      if (!der) {
        this.handOff();
        return;
      }
      this.buffer = this.buffer.subarray(request.headBytes + request.bodyBytes);
      this.busy = true;
      this.options.respond(der).then(
        (answer) => this.reply(answer, request),
        () => this.socket.destroy(),
      );
    }
    if (!this.busy && this.buffer.length === 0 && this.socket.isPaused()) this.socket.resume();
  }

  private reply(answer: OcspAnswer, request: FastRequest): void {
    const { status, headers } = this.options.headersFor(answer, request.ifNoneMatch);
    const body = status === 304 ? Buffer.alloc(0) : answer.der;
    let head = `HTTP/1.1 ${status === 200 ? "200 OK" : "304 Not Modified"}\r\ndate: ${this.options.clock.now().toUTCString()}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    if (status === 200) head += `content-length: ${body.length}\r\n`;
    const close = request.close || this.closing;
    head += close ? "connection: close\r\n\r\n" : "connection: keep-alive\r\n\r\n";
    this.socket.write(body.length > 0 ? Buffer.concat([Buffer.from(head, "latin1"), body]) : Buffer.from(head, "latin1"));
    this.busy = false;
    if (close) {
      this.socket.end();
      return;
    }
    this.drain();
  }

  /** Gives the connection, with the bytes not yet consumed, to node:http, which takes it from here. */
  private handOff(): void {
    this.handedOff = true;
    this.socket.off("data", this.onData);
    this.socket.setTimeout(0);
    this.socket.pause();
    if (this.buffer.length > 0) this.socket.unshift(this.buffer);
    this.buffer = Buffer.alloc(0);
    this.forget();
    this.fallback.emit("connection", this.socket);
    this.socket.resume();
  }
}
