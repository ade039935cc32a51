/**
 * The OCSP fast path against plain node:http, differentially: thousands of generated request streams — plain
 * and mutated OCSP GETs and POSTs, other endpoints, chunked bodies, Content-Length variants, odd, duplicate and
 * case-varied headers, Expect, Connection: close, HTTP/1.0, LF-only line ends, oversize heads, garbage — each
 * pipelined on one connection and delivered in pieces (at every byte boundary for short streams, at random
 * ones for long streams), to the public listener with its fast path and to the same site on node:http alone.
 * Both must take the same requests (method, target, body) off the connection, in the same order, and give the
 * client the same answers. The generator is seeded: a failure names its case and reproduces.
 *
 * The bulk runs over in-process stream pairs, so that where the bytes are cut is exact and the comparison
 * waits on no clock; a share of the valid streams also goes over real loopback sockets, where node:http reads
 * the bytes the fast path hands it through its own socket machinery. Another test checks that a client that
 * pipelines without reading the answers cannot make the fast path queue them without bound.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, Server as HttpServer } from "node:http";
import { connect, type AddressInfo, type Server } from "node:net";
import { duplexPair, type Duplex } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuthorityService } from "../../src/ca/authority-service.js";
import { FixedClock } from "../../src/common/clock.js";
import { silentLogger } from "../../src/common/logger.js";
import type { FramedRequest } from "../../src/http/ocsp-fast-path.js";
import { createPublicHttpServer, createPublicListener, type ListenerObservers, type PublicListenerOptions } from "../../src/http/public-listener.js";
import type { OcspAnswer } from "../../src/revocation/ocsp-responder.js";
import type { CrlRepository } from "../../src/revocation/ports.js";

const SEED = 0x0c5b_2026;
const STREAMS = 1_500;
/** Streams up to this long are cut at every byte boundary; longer ones at random boundaries. */
const CUT_EVERYWHERE_UP_TO = 100;
const RANDOM_CUTS = 6;
const REAL_SOCKET_STREAMS = 60;
/** Streams of a few hundred plain requests: far more than the fast path buffers at once (64 KiB). */
const LONG_STREAMS = 12;
const LONG_STREAM_REQUESTS = 400;

/** mulberry32: small, fast and deterministic. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Generator {
  constructor(private readonly next: () => number) {}

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let index = 0; index < length; index++) out[index] = this.int(256);
    return out;
  }

  caseVaried(name: string): string {
    return [...name].map((char) => (this.chance(0.3) ? char.toUpperCase() : char)).join("");
  }
}

/** The answer the test responder gives: the request echoed, so every answer shows what was framed. */
const etagOf = (der: Buffer): string => `"${createHash("sha256").update(der).digest("hex").slice(0, 16)}"`;
const THIS_UPDATE = new Date("2026-12-04T12:00:00Z");
const NEXT_UPDATE = new Date("2026-12-04T16:00:00Z");

function answerFor(der: Buffer): OcspAnswer {
  const echoed = Buffer.concat([Buffer.from("answer to "), der]);
  // Some answers are cacheable (and so kept by the fast path's reply cache), some not.
  if (der.length % 3 === 0) return { der: echoed, cacheable: false };
  return { der: echoed, cacheable: true, stored: true, thisUpdate: THIS_UPDATE, nextUpdate: NEXT_UPDATE, etag: etagOf(der) };
}

interface GeneratedRequest {
  readonly bytes: Buffer;
  /** Well-formed, answered, and leaves the connection open (used for the real-socket share). */
  readonly valid: boolean;
}

function derPath(g: Generator, der: Buffer): string {
  const base64 = der.toString("base64");
  switch (g.int(9)) {
    case 0:
      return `/ocsp/${base64}`;
    case 1:
      return `/ocsp/${der.toString("base64url")}`;
    case 2:
      return `/ocsp/${base64.replaceAll("+", "%2B").replaceAll("/", "%2F").replaceAll("=", "%3D")}`;
    case 3:
      return `/ocsp/${base64.replaceAll("+", "%20")}`;
    case 4:
      return `/ocsp//${base64}`;
    case 5:
      return g.pick(["/ocsp", "/ocsp/", `//ocsp/${base64}`, `/ocsp/${base64}?x=1`, `/ocsp/%zz${base64}`]);
    default:
      return `/ocsp/${encodeURIComponent(base64)}`;
  }
}

/** Headers every request may carry, some of them odd; Host is usually there. */
function extraHeaders(g: Generator, der: Buffer): string[] {
  const lines: string[] = [];
  if (!g.chance(0.05)) lines.push(`${g.caseVaried("host")}:${g.pick([" ca", "ca", " ca ", "\tca", ""])}`);
  if (g.chance(0.05)) lines.push("Host: other");
  for (let count = g.int(3); count > 0; count--) {
    lines.push(g.pick(["User-Agent: generator/1.0", "Accept: */*", "X-Odd:  spaced\tvalue ", "X-Empty:", `If-None-Match: ${etagOf(der)}`, 'If-None-Match: "nope"', "Connection: keep-alive", "Cache-Control: no-cache"]));
  }
  if (g.chance(0.15)) lines.push(g.pick(["X-High: caf\xe9", "X-Del: a\x7fb", "Upgrade: websocket", "Expect: 100-continue", "Content-Length: 0"]));
  if (g.chance(0.02)) lines.push(`X-Big: ${"b".repeat(g.pick([9_000, 17_000]))}`);
  return lines;
}

function generateRequest(g: Generator): GeneratedRequest {
  const der = g.bytes(1 + g.int(g.chance(0.8) ? 90 : 400));
  const kind = g.int(100);
  let valid = true;
  let requestLine: string;
  let headers = extraHeaders(g, der);
  let body: Buffer = Buffer.alloc(0);
  if (headers.some((line) => /^host:/i.test(line)) === false || headers.length !== new Set(headers.map((line) => line.split(":")[0]?.toLowerCase())).size) valid = false;
  if (headers.some((line) => /^(x-del|upgrade|expect|x-big|content-length)/i.test(line))) valid = false;
  if (kind < 50) {
    const method = g.chance(0.05) ? "HEAD" : "GET";
    requestLine = `${method} ${derPath(g, der)} HTTP/1.1`;
    // Answers to HEAD carry a Content-Length but no body, which the answer reader cannot tell from a body.
    if (method === "HEAD") valid = false;
  } else if (kind < 80) {
    const type = g.pick(["application/ocsp-request", "application/ocsp-request", "Application/OCSP-Request; charset=binary", "text/plain", ""]);
    if (type !== "") headers.push(`${g.caseVaried("content-type")}: ${type}`);
    body = der;
    const length = g.int(12);
    if (length === 0) {
      headers.push("Transfer-Encoding: chunked");
      const cut = g.int(der.length);
      body = Buffer.concat([Buffer.from(`${cut.toString(16)}\r\n`), der.subarray(0, cut), Buffer.from(`\r\n${(der.length - cut).toString(16)}\r\n`), der.subarray(cut), Buffer.from("\r\n0\r\n\r\n")]);
      if (cut === 0) valid = false;
    } else if (length === 1) {
      headers.push(`Content-Length: 0${der.length}`);
    } else if (length === 2) {
      headers.push(`Content-Length: ${der.length}`, `Content-Length: ${der.length}`);
      valid = false;
    } else if (length === 3) {
      headers.push(`Content-Length: ${der.length}`, `content-length: ${der.length + 1}`);
      valid = false;
    } else if (length === 4) {
      valid = false;
    } else if (length === 5) {
      headers.push(`Content-Length: ${der.length}`, "Transfer-Encoding: chunked");
      valid = false;
    } else {
      headers.push(`${g.caseVaried("content-length")}: ${der.length}`);
    }
    requestLine = `POST ${g.pick(["/ocsp", "/ocsp", "/ocsp/", "/elsewhere"])} HTTP/1.1`;
  } else if (kind < 92) {
    const method = g.pick(["GET", "GET", "HEAD", "DELETE"]);
    if (method === "HEAD") valid = false;
    requestLine = `${method} ${g.pick(["/healthz", "/bundle", "/bundle.pem", "/ca/00.crt", "/nothing", "/ocspx", "/OCSP/abc"])} HTTP/1.1`;
  } else if (kind < 96) {
    requestLine = `GET ${derPath(g, der)} HTTP/1.0`;
    valid = false;
  } else {
    headers = [];
    valid = false;
    return { bytes: g.chance(0.5) ? g.bytes(1 + g.int(40)) : Buffer.from(g.pick(["GET /ocsp/AAAA HTTP/1.1", "POST /ocsp HTTP/1.1\r\nContent-Length: 5", "\r\n", "GET /ocsp/ HTTP/9.9\r\nHost: ca\r\n\r\n", "GET  /ocsp/AA HTTP/1.1\r\nHost: ca\r\n\r\n"]), "latin1"), valid };
  }
  if (g.chance(0.04)) {
    headers.push(g.pick(["Connection: close", "Connection: Keep-Alive, Close", "connection: CLOSE"]));
    valid = false;
  }
  let head = `${requestLine}\r\n${headers.map((line) => `${line}\r\n`).join("")}\r\n`;
  if (g.chance(0.04)) {
    head = head.replaceAll("\r\n", "\n");
    valid = false;
  } else if (g.chance(0.03)) {
    const lines = head.split("\r\n");
    const at = 1 + g.int(lines.length - 1);
    head = [...lines.slice(0, at), ""].join("\r\n").replace(/\r\n$/, "\n") + lines.slice(at).join("\r\n");
    valid = false;
  }
  return { bytes: Buffer.concat([Buffer.from(head, "latin1"), body]), valid };
}

const INTERESTING_BYTES = [0x0d, 0x0a, 0x20, 0x3a, 0x00, 0x7f, 0x80, 0x09, 0x30, 0x61, 0x2f, 0x25];

/** Flips, drops, inserts or repeats a few bytes, or cuts the stream short. */
function mutate(g: Generator, stream: Buffer): Buffer {
  let bytes: Buffer = Buffer.from(stream);
  for (let count = 1 + g.int(3); count > 0 && bytes.length > 0; count--) {
    const at = g.int(bytes.length);
    switch (g.int(5)) {
      case 0:
        bytes[at] = g.pick(INTERESTING_BYTES);
        break;
      case 1:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
        break;
      case 2:
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.of(g.pick(INTERESTING_BYTES)), bytes.subarray(at)]);
        break;
      case 3:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + 1 + g.int(30)), bytes.subarray(at)]);
        break;
      default:
        bytes = bytes.subarray(0, at);
    }
  }
  return bytes;
}

interface GeneratedStream {
  readonly bytes: Buffer;
  readonly valid: boolean;
  readonly requests: number;
}

function generateStream(g: Generator): GeneratedStream {
  const requests = Array.from({ length: 1 + g.int(5) }, () => generateRequest(g));
  const bytes = Buffer.concat(requests.map((request) => request.bytes));
  const valid = requests.every((request) => request.valid);
  if (g.chance(0.35)) return { bytes: mutate(g, bytes), valid: false, requests: requests.length };
  return { bytes, valid, requests: requests.length };
}

/** Hundreds of plain OCSP requests, the kind the fast path serves itself, then one more of any kind. */
function generateLongStream(g: Generator): GeneratedStream {
  const requests: Buffer[] = [];
  while (requests.length < LONG_STREAM_REQUESTS) {
    const der = g.bytes(1 + g.int(200));
    const plain = g.chance(0.5)
      ? Buffer.from(`GET /ocsp/${encodeURIComponent(der.toString("base64"))} HTTP/1.1\r\nHost: ca\r\n\r\n`)
      : Buffer.concat([Buffer.from(`POST /ocsp HTTP/1.1\r\nHost: ca\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${der.length}\r\n\r\n`), der]);
    requests.push(plain);
  }
  requests.push(generateRequest(g).bytes);
  return { bytes: Buffer.concat(requests), valid: false, requests: requests.length };
}

/** Where a stream is cut into pieces for delivery: every single cut for short streams, random pieces for long. */
function deliveries(g: Generator, bytes: Buffer): number[][] {
  const cuts: number[][] = [[]];
  if (bytes.length <= CUT_EVERYWHERE_UP_TO) {
    for (let at = 1; at < bytes.length; at++) cuts.push([at]);
  } else {
    for (let count = 0; count < RANDOM_CUTS; count++) cuts.push([1 + g.int(bytes.length - 1)]);
    const many = new Set<number>();
    for (let count = Math.max(8, Math.floor(bytes.length / 4096)); count > 0; count--) many.add(1 + g.int(bytes.length - 1));
    cuts.push([...many].sort((a, b) => a - b));
  }
  return cuts;
}

function pieces(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const at of [...cuts, bytes.length]) {
    out.push(bytes.subarray(from, at));
    from = at;
  }
  return out.filter((piece) => piece.length > 0);
}

interface Framed {
  readonly method: string;
  readonly target: string;
  body: string;
  /** On the node:http side: the request, which counts as framed once node has read all of it. */
  readonly request?: IncomingMessage;
}

interface Answer {
  readonly status: number;
  readonly headers: string;
  readonly body: string;
}

const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

/**
 * Splits what came back into answers: status, the headers that matter (sorted), body. Interim 100 Continue
 * answers are left out: node:http writes them the moment it reads `Expect`, even while an earlier pipelined
 * answer is still pending, so where one lands depends on timing (ahead of that answer, or inside the next).
 */
function parseAnswers(received: Buffer): Answer[] {
  const data = Buffer.from(received.toString("latin1").replaceAll(CONTINUE, ""), "latin1");
  const answers: Answer[] = [];
  let offset = 0;
  while (offset < data.length) {
    const end = data.indexOf("\r\n\r\n", offset);
    if (end === -1) {
      answers.push({ status: -1, headers: "", body: data.toString("latin1", offset) });
      break;
    }
    const [statusLine, ...lines] = data.toString("latin1", offset, end).split("\r\n");
    const headers = lines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()] as const);
    const named = new Map(headers);
    let start = end + 4;
    let body = "";
    if (named.get("transfer-encoding") === "chunked") {
      for (;;) {
        const lineEnd = data.indexOf("\r\n", start);
        if (lineEnd === -1) break;
        const size = Number.parseInt(data.toString("latin1", start, lineEnd), 16);
        start = lineEnd + 2;
        if (size === 0) {
          start += 2;
          break;
        }
        body += data.toString("latin1", start, start + size);
        start += size + 2;
      }
    } else {
      const length = Number(named.get("content-length") ?? 0);
      body = data.toString("latin1", start, start + length);
      start += length;
    }
    const kept = headers
      .filter(([name]) => !["date", "keep-alive", "transfer-encoding"].includes(name))
      .map(([name, value]) => `${name}: ${value}`)
      .sort()
      .join("\n");
    answers.push({ status: Number((statusLine as string).split(" ")[1]), headers: kept, body });
    offset = start;
  }
  return answers;
}

interface Outcome {
  readonly framed: Framed[];
  readonly answers: Answer[];
  readonly ended: boolean;
  /** Requests the fast path took before node:http got the connection; -1 if node:http took one first. */
  readonly byFastPath: number;
}

/** One side under test: a listener, and what it framed on the connection being driven. */
interface Side {
  readonly listener: Server | HttpServer;
  log: Framed[];
  fastPath: number;
  nodeFirst: boolean;
}

function makeSide(build: (options: PublicListenerOptions, observers: ListenerObservers) => Server | HttpServer, options: PublicListenerOptions): Side {
  const side = { log: [], fastPath: 0, nodeFirst: false } as unknown as Side & { listener: Server | HttpServer };
  side.listener = build(options, {
    fastPath: (request: FramedRequest) => {
      if (side.log.length > side.fastPath) side.nodeFirst = true;
      side.log.push({ method: request.method, target: request.target, body: request.body.toString("hex") });
      side.fastPath++;
    },
    nodeHttp: (request: IncomingMessage) => {
      const framed: Framed = { method: request.method ?? "", target: request.url ?? "", body: "", request };
      side.log.push(framed);
      request.on("data", (chunk: Buffer) => {
        framed.body += chunk.toString("hex");
      });
    },
  });
  return side;
}

/**
 * What a side framed: node:http announces a request once its head is read, so its requests count once their
 * bodies are complete, as the fast path's do. Bodies are left out where node:http gave up on the connection:
 * it drops what it had read of them.
 */
function framedBy(side: Side, withBodies: boolean): Framed[] {
  return side.log
    .filter((framed) => framed.request === undefined || framed.request.complete)
    .map(({ method, target, body }) => ({ method, target, body: withBodies ? body : "" }));
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Drives both sides with the same pieces over in-process stream pairs; waits until neither moves. */
async function driveInProcess(sides: readonly [Side, Side], parts: readonly Buffer[]): Promise<[Outcome, Outcome]> {
  const clients = sides.map((side) => {
    side.log = [];
    side.fastPath = 0;
    side.nodeFirst = false;
    const [client, server] = duplexPair();
    // The fast path and node:http set idle timeouts on real sockets; these pairs have no timer to set.
    (server as Duplex & { setTimeout(): Duplex }).setTimeout = () => server;
    const state = { chunks: [] as Buffer[], ended: false, client };
    client.on("data", (chunk: Buffer) => state.chunks.push(chunk));
    client.on("end", () => {
      state.ended = true;
    });
    client.on("error", () => {});
    side.listener.emit("connection", server);
    return state;
  });
  for (const part of parts) {
    for (const state of clients) if (!state.client.writableEnded && !state.client.destroyed) state.client.write(part);
    await turn();
  }
  let quiet = 0;
  let last = "";
  while (quiet < 3) {
    await turn();
    const now = clients.map((state, index) => `${state.chunks.length}/${state.ended}/${sides[index]?.log.length}`).join(" ");
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  for (const state of clients) state.client.destroy();
  const answers = clients.map((state) => parseAnswers(Buffer.concat(state.chunks)));
  const gaveUp = answers.some((list) => isParseFailure(list.at(-1)));
  return sides.map((side, index) => ({
    framed: framedBy(side, !gaveUp),
    answers: answers[index] as Answer[],
    ended: clients[index]?.ended ?? false,
    byFastPath: side.nodeFirst ? -1 : side.fastPath,
  })) as [Outcome, Outcome];
}

/** node:http's answer to bytes it cannot parse (400, or 431 for a head too large), written as it gives up on the connection. */
const isParseFailure = (answer: Answer | undefined): boolean => (answer?.status === 400 || answer?.status === 431) && answer.headers === "connection: close" && answer.body === "";

/**
 * Exactly the same answers, except around a request node:http fails to parse: it then closes at once, drops
 * the answers still being prepared, and writes its 400 only if no answer has started on the connection yet —
 * all depending on what is in flight when the bad bytes arrive. The fast path has sent its own answers by
 * then. So when either side ends on that 400, the answers node:http alone gave (without the 400) must be the
 * first answers the fast path gave; the requests framed are compared separately and must always be the same.
 */
function sameAnswers(withFastPath: Answer[], plain: Answer[]): boolean {
  if (JSON.stringify(withFastPath) === JSON.stringify(plain)) return true;
  if (!isParseFailure(withFastPath.at(-1)) && !isParseFailure(plain.at(-1))) return false;
  const fast = isParseFailure(withFastPath.at(-1)) ? withFastPath.slice(0, -1) : withFastPath;
  const node = isParseFailure(plain.at(-1)) ? plain.slice(0, -1) : plain;
  return node.every((answer, index) => JSON.stringify(answer) === JSON.stringify(fast[index]));
}

/** What differs between the two sides, if anything. */
function difference(fast: Outcome, node: Outcome): string | undefined {
  if (fast.byFastPath < 0) return "node:http took a request before the fast path did";
  if (JSON.stringify(fast.framed) !== JSON.stringify(node.framed)) return `framing\n  fast path: ${JSON.stringify(fast.framed)}\n  node:http: ${JSON.stringify(node.framed)}`;
  if (!sameAnswers(fast.answers, node.answers)) return `answers\n  fast path: ${printable(JSON.stringify(fast.answers))}\n  node:http: ${printable(JSON.stringify(node.answers))}`;
  const gaveUp = isParseFailure(node.answers.at(-1)) || isParseFailure(fast.answers.at(-1));
  if (!gaveUp && fast.ended !== node.ended) return `connection end: fast path ${fast.ended}, node:http ${node.ended}`;
  return undefined;
}

/** Text for a failure message: escaped, long runs folded, and at most a few thousand characters. */
function printable(text: string): string {
  const folded = JSON.stringify(text).replace(/(.)\1{40,}/g, (run, char: string) => `${char}×${run.length}`);
  return folded.length > 4_000 ? `${folded.slice(0, 4_000)}… (${folded.length} characters)` : folded;
}

/** Deliveries in flight at once, each on its own pair of listeners: most of a delivery is waiting for turns of the event loop. */
const CONCURRENCY = 16;

describe("the OCSP fast path frames every request stream exactly as node:http does", () => {
  const clock = new FixedClock(new Date("2026-12-04T12:30:00Z"));
  const options: PublicListenerOptions = {
    authorities: { get: () => undefined, trustBundle: () => ({ roots: [], intermediates: [] }) } as unknown as AuthorityService,
    crls: { get: () => undefined } as unknown as CrlRepository,
    readiness: () => ({ database: true, hsm: true }),
    ocsp: { respond: async (der) => answerFor(der), generation: () => 0 },
    clock,
    logger: silentLogger,
  };
  const g = new Generator(random(SEED));
  const streams = [...Array.from({ length: STREAMS }, () => generateStream(g)), ...Array.from({ length: LONG_STREAMS }, () => generateLongStream(g))];
  const jobs = streams.flatMap((stream, index) => deliveries(g, stream.bytes).map((cuts) => ({ index, stream, cuts })));

  it(`takes the same requests off ${STREAMS} generated streams and ${LONG_STREAMS} long ones, cut at every byte or at random, and answers them alike`, async () => {
    const failures: string[] = [];
    let servedByFastPath = 0;
    let handedOver = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      const sides: [Side, Side] = [makeSide(createPublicListener, options), makeSide(createPublicHttpServer, options)];
      while (next < jobs.length && failures.length === 0) {
        const { index, stream, cuts } = jobs[next++] as (typeof jobs)[number];
        const [fast, node] = await driveInProcess(sides, pieces(stream.bytes, cuts));
        const problem = difference(fast, node);
        if (problem) failures.push(`stream ${index} (seed ${SEED}) cut at [${cuts.join(",")}]: ${printable(stream.bytes.toString("latin1"))}: ${problem}`);
        servedByFastPath += fast.byFastPath;
        if (fast.byFastPath < fast.framed.length) handedOver++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(failures.slice(0, 1)).toEqual([]);
    // The comparison means something only if both paths got plenty of traffic.
    expect(jobs.length).toBeGreaterThan(15_000);
    expect(servedByFastPath).toBeGreaterThan(5_000);
    expect(handedOver).toBeGreaterThan(5_000);
  }, 120_000);

  it("stops taking requests while the client reads no answers, and takes them all once it does", async () => {
    const side = makeSide(createPublicListener, options);
    const [client, server] = duplexPair();
    (server as Duplex & { setTimeout(): Duplex }).setTimeout = () => server;
    const received: Buffer[] = [];
    client.pause();
    side.listener.emit("connection", server);
    const requests = 3_000;
    const get = (index: number) => `GET /ocsp/${Buffer.from(`request ${index}`).toString("base64")} HTTP/1.1\r\nHost: ca\r\n\r\n`;
    client.write(Array.from({ length: requests }, (_, index) => get(index)).join(""));
    for (let round = 0; round < 20; round++) await turn();
    // Answers queue up to about one stream buffer, then reading stops: memory stays bounded whatever the client sends.
    expect(side.fastPath).toBeGreaterThan(0);
    expect(side.fastPath).toBeLessThan(requests / 4);
    expect(server.writableLength).toBeLessThan(64 * 1024);
    client.on("data", (chunk: Buffer) => received.push(chunk));
    client.resume();
    for (let round = 0; round < 10_000 && side.fastPath < requests; round++) await turn();
    for (let round = 0; round < 20; round++) await turn();
    const answers = parseAnswers(Buffer.concat(received));
    expect(answers).toHaveLength(requests);
    expect(answers.map((answer) => answer.body)).toEqual(Array.from({ length: requests }, (_, index) => `answer to request ${index}`));
    client.destroy();
  });

  describe("over real sockets", () => {
    const withFastPath = makeSide(createPublicListener, options);
    const plain = makeSide(createPublicHttpServer, options);
    const ports = new Map<Side, number>();

    beforeAll(async () => {
      for (const side of [withFastPath, plain]) {
        await new Promise<void>((resolve) => side.listener.listen(0, "127.0.0.1", resolve));
        ports.set(side, (side.listener.address() as AddressInfo).port);
      }
    });

    afterAll(async () => {
      for (const side of [withFastPath, plain]) await new Promise((resolve) => side.listener.close(resolve));
    });

    /** Sends the pieces on a fresh connection and reads until `count` answers came back (or 5 s passed). */
    function overSocket(side: Side, parts: readonly Buffer[], count: number): Promise<{ answers: Answer[]; framed: Framed[] }> {
      side.log = [];
      side.fastPath = 0;
      return new Promise((resolve, reject) => {
        const socket = connect({ port: ports.get(side) as number, host: "127.0.0.1", noDelay: true });
        const chunks: Buffer[] = [];
        const finish = () => {
          clearTimeout(timer);
          socket.destroy();
          resolve({ answers: parseAnswers(Buffer.concat(chunks)), framed: framedBy(side, true) });
        };
        const timer = setTimeout(finish, 5_000);
        socket.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          if (parseAnswers(Buffer.concat(chunks)).filter((answer) => answer.status > 0).length >= count) finish();
        });
        socket.on("error", reject);
        socket.on("connect", async () => {
          for (const part of parts) {
            socket.write(part);
            await turn();
          }
        });
      });
    }

    it(`answers ${REAL_SOCKET_STREAMS} valid pipelined streams, sent in random pieces, as node:http does`, async () => {
      const valid = streams.filter((stream) => stream.valid && stream.requests > 1).slice(0, REAL_SOCKET_STREAMS);
      expect(valid.length).toBe(REAL_SOCKET_STREAMS);
      for (const [index, stream] of valid.entries()) {
        const parts = pieces(stream.bytes, deliveries(g, stream.bytes).at(-1) as number[]);
        const fast = await overSocket(withFastPath, parts, stream.requests);
        const node = await overSocket(plain, parts, stream.requests);
        const where = `valid stream ${index}: ${printable(stream.bytes.toString("latin1"))}`;
        expect(node.answers.length, where).toBe(stream.requests);
        expect(fast.answers, where).toEqual(node.answers);
        expect(fast.framed, where).toEqual(node.framed);
      }
    }, 60_000);
  });
});
