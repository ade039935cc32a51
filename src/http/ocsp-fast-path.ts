import type { Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import type { Clock } from "../common/clock.js";
import type { OcspAnswer } from "../revocation/ocsp-responder.js";
import { ocspRequestDerOfPath } from "./ocsp-request.js";

/** What the fast path needs from the listener: the responder and the RFC 5019 headers of an answer. */
export interface OcspFastPathOptions {
  readonly respond: (requestDer: Buffer) => Promise<OcspAnswer>;
  /** The responder's generation: a stored answer stays valid for the same request while it is unchanged. */
  readonly generation: () => number;
  readonly headersFor: (answer: OcspAnswer, ifNoneMatch: string | undefined) => { status: 200 | 304; headers: Record<string, string> };
  readonly clock: Clock;
  readonly maxRequestBytes: number;
  /**
   * Told of every request the fast path answers itself, as it framed it. The framing tests use it to check
   * that the fast path splits any byte stream into the same requests as node:http.
   */
  readonly observe?: (request: FramedRequest) => void;
}

/** One request as the fast path read it off the connection. */
export interface FramedRequest {
  readonly method: "GET" | "POST";
  readonly target: string;
  readonly body: Buffer;
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
/**
 * Bytes a connection may buffer while a response is being prepared (pipelined requests). Reading pauses
 * above it and resumes once the buffer is back under it, whatever is left there (usually part of the next
 * request).
 */
const MAX_BUFFERED_BYTES = 64 * 1024;
const IDLE_TIMEOUT_MS = 65_000;
/** A reply is not kept when its response is this close to its nextUpdate (the cache lives up to a second). */
const CACHE_MARGIN_MS = 5_000;
const REQUEST_LINE = /^(GET|POST) (\/ocsp(?:\/[A-Za-z0-9+/=%_-]*)?) HTTP\/1\.1$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Visible ASCII, spaces and tabs: no control characters, no obs-fold, nothing outside ASCII. */
const HEADER_VALUE = /^[\x20-\x7e\t]*$/;
const HEADER_NAME_SO_FAR = /^[!#$%&'*+.^_`|~0-9A-Za-z-]*$/;
const TARGET_SO_FAR = /^(?:\/[A-Za-z0-9+/=%_-]*)?$/;

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
    if (end === -1) return buffer.length > MAX_HEAD_BYTES || !couldBeginFastHead(buffer) ? "hand-off" : undefined;
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
 * Content-Length on POST, a Host (node refuses HTTP/1.1 without one), no Transfer-Encoding, no Expect — so
 * this parser and node's can never disagree about where a request ends: anything else goes to node's parser
 * before a byte of it is consumed.
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
  if (!headers.has("host") || headers.has("transfer-encoding") || headers.has("expect") || headers.has("upgrade")) return "hand-off";
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

/**
 * Whether the start of a head (no blank line yet) could still become one that parseHead accepts. When it
 * cannot, node:http must see it at once: node answers garbage, control characters and bare-LF line ends with
 * a 400 as soon as they arrive, where waiting for a blank line that never comes would leave the client hanging.
 */
function couldBeginFastHead(buffer: Buffer): boolean {
  let text = buffer.toString("latin1");
  // A CR at the very end is the first half of a line end still on its way.
  if (text.endsWith("\r")) text = text.slice(0, -1);
  const lines = text.split("\r\n");
  const requestLine = lines[0] as string;
  const method = requestLine.startsWith("GET ") ? "GET /ocsp" : requestLine.startsWith("POST ") ? "POST /ocsp" : undefined;
  if (method === undefined) {
    if (lines.length > 1 || !("GET /ocsp".startsWith(requestLine) || "POST /ocsp".startsWith(requestLine))) return false;
  } else if (requestLine.length <= method.length) {
    if (lines.length > 1 ? !REQUEST_LINE.test(requestLine) : !method.startsWith(requestLine)) return false;
  } else {
    if (!requestLine.startsWith(method)) return false;
    if (lines.length > 1) {
      if (!REQUEST_LINE.test(requestLine)) return false;
    } else {
      const space = requestLine.indexOf(" ", method.length);
      const target = requestLine.slice(method.length, space === -1 ? undefined : space);
      if (!TARGET_SO_FAR.test(target)) return false;
      if (space !== -1 && !"HTTP/1.1".startsWith(requestLine.slice(space + 1))) return false;
    }
  }
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index] as string;
    const colon = line.indexOf(":");
    const last = index === lines.length - 1;
    if (colon === -1) {
      if (!last || !HEADER_NAME_SO_FAR.test(line)) return false;
    } else if (!HEADER_NAME.test(line.slice(0, colon)) || !HEADER_VALUE.test(line.slice(colon + 1))) {
      return false;
    }
  }
  return true;
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
  /** The connection belongs to node:http now. */
  private handedOff = false;
  /** A reply said `connection: close`: whatever the client sends after it is not read. */
  private finished = false;
  private closing = false;
  private readonly onData = (chunk: Buffer): void => {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > MAX_BUFFERED_BYTES) this.socket.pause();
    this.drain();
  };
  /** Replies queued faster than the client reads them stop the reading of further requests until they are sent. */
  private readonly onDrain = (): void => this.drain();

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
    socket.on("drain", this.onDrain);
    socket.on("error", () => socket.destroy());
    socket.once("close", forget);
  }

  closeIfIdle(): void {
    if (!this.handedOff && !this.busy && this.buffer.length === 0) this.socket.end();
    this.closing = true;
  }

  private drain(): void {
    this.serveBuffered();
    if (this.handedOff || this.finished) return;
    // Resuming however serveBuffered stopped: a partial request left in the buffer is the usual case.
    if (this.buffer.length <= MAX_BUFFERED_BYTES && this.socket.isPaused()) this.socket.resume();
  }

  /** Answers the requests already buffered, until one needs the responder, more bytes, or node:http. */
  private serveBuffered(): void {
    while (!this.busy && !this.handedOff && !this.finished && this.buffer.length > 0 && !this.socket.writableNeedDrain) {
      const request = this.heads.read(this.buffer);
      if (request === undefined) return;
      if (request === "hand-off") {
        this.handOff();
        return;
      }
      const length = request.headBytes + request.bodyBytes;
      if (this.buffer.length < length) return;
      // node:http refuses bytes pipelined after `Connection: close` with a 400 rather than ignoring them; it
      // gets such a request whole, so the client sees the same either way.
      if (request.close && this.buffer.length > length) {
        this.handOff();
        return;
      }
      const body = request.method === "POST" ? this.buffer.subarray(request.headBytes, length) : undefined;
      const key = cacheKey(request, body);
      const generation = this.options.generation();
      const second = this.replies.currentSecond();
      // A reply is only kept for a request that was answered, so a cached GET path is known to decode.
      const cached = key === undefined ? undefined : this.replies.get(key, generation, second);
      if (cached) {
        this.take(request, length, body);
        this.socket.write(cached);
        continue;
      }
      let der: Buffer;
      if (body) der = Buffer.from(body);
      else {
        const fromPath = ocspRequestDerOfPath(request.target);
        if (typeof fromPath === "string") {
          this.handOff();
          return;
        }
        der = fromPath;
      }
      this.take(request, length, body);
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
  }

  /** Consumes one request's bytes from the buffer. */
  private take(request: FastRequest, length: number, body: Buffer | undefined): void {
    this.buffer = this.buffer.subarray(length);
    this.options.observe?.({ method: request.method, target: request.target, body: body ? Buffer.from(body) : Buffer.alloc(0) });
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
      this.finished = true;
      this.buffer = Buffer.alloc(0);
      this.socket.off("data", this.onData);
      this.socket.end();
      return;
    }
    this.drain();
  }

  /** Gives the connection, with the bytes not yet consumed, to node:http, which takes it from here. */
  private handOff(): void {
    this.handedOff = true;
    this.socket.off("data", this.onData);
    this.socket.off("drain", this.onDrain);
    this.socket.setTimeout(0);
    this.socket.pause();
    if (this.buffer.length > 0) this.socket.unshift(this.buffer);
    this.buffer = Buffer.alloc(0);
    this.forget();
    this.fallback.emit("connection", this.socket);
    this.socket.resume();
  }
}
