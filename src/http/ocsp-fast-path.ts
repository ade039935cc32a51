import type { Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import type { Clock } from "../common/clock.js";
import type { OcspAnswer } from "../revocation/ocsp-responder.js";

/** What the fast path needs from the listener: the responder and the RFC 5019 headers of an answer. */
export interface OcspFastPathOptions {
  readonly respond: (requestDer: Buffer) => Promise<OcspAnswer>;
  /** The responder's generation: a stored answer stays valid for the same request while it is unchanged. */
  readonly generation: () => number;
  readonly headersFor: (answer: OcspAnswer, ifNoneMatch: string | undefined) => { status: 200 | 304; headers: Record<string, string> };
  readonly clock: Clock;
  readonly maxRequestBytes: number;
}

const HEAD_END = Buffer.from("\r\n\r\n");
const MAX_HEAD_BYTES = 8 * 1024;
/**
 * Heads and requests remembered (see HeadReader and ReplyCache), and the longest one remembered: ordinary
 * single-certificate requests are a few hundred bytes, and the bound keeps the memory small whatever
 * clients send.
 */
const MAX_REMEMBERED = 10_000;
const MAX_REMEMBERED_BYTES = 1024;
/** Bytes a connection may buffer while a response is being prepared (pipelined requests). */
const MAX_BUFFERED_BYTES = 64 * 1024;
const IDLE_TIMEOUT_MS = 65_000;
/** A reply is not kept when its response is this close to its nextUpdate (the cache lives up to a second). */
const CACHE_MARGIN_MS = 5_000;
const REQUEST_LINE = /^(GET|POST) (\/ocsp(?:\/[A-Za-z0-9+/=%_-]*)?) HTTP\/1\.1$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Visible ASCII, spaces and tabs: no control characters, no obs-fold, nothing outside ASCII. */
const HEADER_VALUE = /^[\x20-\x7e\t]*$/;

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
 * Reads request heads off a connection's buffer: `"hand-off"` leaves the connection to node:http, `undefined`
 * waits for more bytes.
 */
class HeadReader {
  /** Request heads already read, by their text: a client repeats the same head for the same question. */
  private readonly known = new Map<string, FastRequest | "hand-off">();

  constructor(private readonly maxRequestBytes: number) {}

  read(buffer: Buffer): FastRequest | "hand-off" | undefined {
    const end = buffer.indexOf(HEAD_END);
    if (end === -1) return buffer.length > MAX_HEAD_BYTES ? "hand-off" : undefined;
    if (end > MAX_HEAD_BYTES) return "hand-off";
    const head = buffer.toString("latin1", 0, end);
    let request = this.known.get(head);
    if (request === undefined) {
      request = parseHead(head, this.maxRequestBytes);
      if (head.length <= MAX_REMEMBERED_BYTES) {
        if (this.known.size >= MAX_REMEMBERED) this.known.clear();
        this.known.set(head, request);
      }
    }
    return request;
  }
}

/**
 * Parses one request head (the text before the blank line), or says to leave the connection to node:http.
 * Only the plain cases are accepted — GET or POST of /ocsp over HTTP/1.1, each header once at most, a
 * Content-Length on POST, no Transfer-Encoding, no Expect — so this parser and node's can never disagree
 * about where a request ends: anything else goes to node's parser before a byte of it is consumed.
 */
function parseHead(head: string, maxRequestBytes: number): FastRequest | "hand-off" {
  let lineEnd = head.indexOf("\r\n");
  if (lineEnd === -1) lineEnd = head.length;
  const requestLine = REQUEST_LINE.exec(head.slice(0, lineEnd));
  if (!requestLine) return "hand-off";
  const headers = new Map<string, string>();
  while (lineEnd < head.length) {
    const lineStart = lineEnd + 2;
    lineEnd = head.indexOf("\r\n", lineStart);
    if (lineEnd === -1) lineEnd = head.length;
    const colon = head.indexOf(":", lineStart);
    if (colon === -1 || colon > lineEnd) return "hand-off";
    const name = head.slice(lineStart, colon);
    const value = head.slice(colon + 1, lineEnd);
    if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value)) return "hand-off";
    const lowerName = name.toLowerCase();
    if (headers.has(lowerName)) return "hand-off";
    headers.set(lowerName, value.trim());
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
    headBytes: head.length + HEAD_END.length,
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
  const replies = new ReplyCache(options);
  const heads = new HeadReader(options.maxRequestBytes);
  const server = createServer({ noDelay: true }, (socket) => {
    const connection = new FastConnection(socket, fallback, options, heads, replies, () => open.delete(connection));
    open.add(connection);
  }) as Server & { closeIdleConnections(): void };
  server.closeIdleConnections = () => {
    for (const connection of open) connection.closeIfIdle();
    fallback.closeIdleConnections();
  };
  return server;
}

interface CachedReply {
  readonly bytes: Buffer;
  readonly generation: number;
  readonly second: number;
}

/**
 * Complete keep-alive replies (status line, headers, body) to stored responses, keyed by the request as it
 * arrived. Most OCSP traffic repeats a few requests, and building a reply — decoding the request, finding
 * the response, formatting the dates — costs more than sending it. A reply is reused only within the same
 * second (its Date and max-age are per second) and while the responder's generation is unchanged, so a
 * revocation is served from the first request after it.
 */
class ReplyCache {
  private readonly replies = new Map<string, CachedReply>();

  constructor(private readonly options: OcspFastPathOptions) {}

  currentSecond(): number {
    return Math.floor(this.options.clock.now().getTime() / 1000);
  }

  get(key: string, generation: number, second: number): Buffer | undefined {
    const reply = this.replies.get(key);
    return reply && reply.generation === generation && reply.second === second ? reply.bytes : undefined;
  }

  keep(key: string, reply: CachedReply, answer: OcspAnswer): void {
    if (!answer.cacheable || !answer.stored) return;
    if (answer.nextUpdate.getTime() - reply.second * 1000 < CACHE_MARGIN_MS) return;
    if (this.replies.size >= MAX_REMEMBERED) this.replies.clear();
    this.replies.set(key, reply);
  }
}

/** The cache key of a request: its path for GET, its body for POST. */
function cacheKey(request: FastRequest, body: Buffer | undefined): string | undefined {
  if (request.close || request.ifNoneMatch !== undefined) return undefined;
  if (request.target.length > MAX_REMEMBERED_BYTES || request.bodyBytes > MAX_REMEMBERED_BYTES) return undefined;
  return request.method === "GET" ? request.target : `POST ${body?.toString("latin1")}`;
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
    private readonly heads: HeadReader,
    private readonly replies: ReplyCache,
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
      const request = this.heads.read(this.buffer);
      if (request === undefined) return;
      if (request === "hand-off") {
        this.handOff();
        return;
      }
      if (this.buffer.length < request.headBytes + request.bodyBytes) return;
      const body = request.method === "POST" ? this.buffer.subarray(request.headBytes, request.headBytes + request.bodyBytes) : undefined;
      const key = cacheKey(request, body);
      const generation = this.options.generation();
      const second = this.replies.currentSecond();
      const cached = key === undefined ? undefined : this.replies.get(key, generation, second);
      if (cached) {
        this.buffer = this.buffer.subarray(request.headBytes + request.bodyBytes);
        this.socket.write(cached);
        continue;
      }
      const der = body ? Buffer.from(body) : derOfPath(request.target);
      if (!der) {
        this.handOff();
        return;
      }
      this.buffer = this.buffer.subarray(request.headBytes + request.bodyBytes);
      this.busy = true;
      this.options.respond(der).then(
        (answer) => {
          const bytes = this.reply(answer, request);
          if (key !== undefined && !this.closing) this.replies.keep(key, { bytes, generation, second }, answer);
          this.drainAfterReply(request);
        },
        () => this.socket.destroy(),
      );
    }
    if (!this.busy && this.buffer.length === 0 && this.socket.isPaused()) this.socket.resume();
  }

  /** Writes the reply to one request and returns its bytes. */
  private reply(answer: OcspAnswer, request: FastRequest): Buffer {
    const { status, headers } = this.options.headersFor(answer, request.ifNoneMatch);
    const body = status === 304 ? Buffer.alloc(0) : answer.der;
    let head = `HTTP/1.1 ${status === 200 ? "200 OK" : "304 Not Modified"}\r\ndate: ${this.options.clock.now().toUTCString()}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    if (status === 200) head += `content-length: ${body.length}\r\n`;
    head += request.close || this.closing ? "connection: close\r\n\r\n" : "connection: keep-alive\r\n\r\n";
    const bytes = body.length > 0 ? Buffer.concat([Buffer.from(head, "latin1"), body]) : Buffer.from(head, "latin1");
    this.socket.write(bytes);
    return bytes;
  }

  private drainAfterReply(request: FastRequest): void {
    this.busy = false;
    if (request.close || this.closing) {
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
