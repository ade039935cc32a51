import { domainToASCII, domainToUnicode } from "node:url";

/**
 * Validation of the workload identities Anchorage certifies: SPIFFE IDs (the one URI SAN of an X.509-SVID) and
 * DNS names (the optional DNS SANs). The same rules apply to names read from a CSR and to names an administrator
 * types into an enrollment token or registration, so that a token can never promise a name the CA would refuse to
 * issue. Everything here is pure and synchronous.
 */

/** A name that cannot go into a workload certificate. `message` says what is wrong and is safe to show the caller. */
export class InvalidIdentityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidIdentityError";
  }
}

/** A SPIFFE ID split into its parts. `path` is `""` or starts with `/`; `id` is the full ID, already canonical. */
export interface SpiffeId {
  readonly id: string;
  readonly trustDomain: string;
  readonly path: string;
}

const SPIFFE_SCHEME = "spiffe://";
/** SPIFFE ID spec §2.3: the limit applies to the whole URI, in bytes. */
const MAX_SPIFFE_ID_BYTES = 2048;
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;

const MAX_DNS_NAME_OCTETS = 253;
const MAX_DNS_LABEL_OCTETS = 63;
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/**
 * A last label that WHATWG URL parsers (browsers, Node's URL, many proxies) read as an IPv4 number, decimal or hex.
 * A certificate for "10" or "1.2.3.4" or "0x7f000001" as a DNS name would be matched against an IP by some clients.
 */
const NUMERIC_LAST_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;

/** Only this many characters of a refused value are echoed back: the value may be hostile or huge. */
const MAX_ECHO_CHARS = 100;

/**
 * Quotes a refused value for an error message. JSON escaping keeps control characters and quotes from
 * forging log lines or confusing the reader; truncation keeps a 2 KiB garbage string out of every log line.
 */
function quote(value: string): string {
  const shown = value.length > MAX_ECHO_CHARS ? `${value.slice(0, MAX_ECHO_CHARS)}…` : value;
  return JSON.stringify(shown);
}

/**
 * Parses a SPIFFE ID exactly as the SPIFFE ID specification (SPIFFE-ID.md §2) defines it, without normalising:
 * a name that is merely equivalent to a valid ID (upper-case scheme, percent-encoded path, `.` segments) is refused
 * rather than rewritten, because identities are compared as strings everywhere downstream (policy, audit, mTLS
 * authorisation in the workloads' own libraries). That is also why the WHATWG URL class is not used: it would
 * quietly lower-case, resolve dot segments and decode.
 *
 * Rules: scheme `spiffe://` in lower case; a non-empty trust domain of `[a-z0-9._-]` (so no port, no userinfo, no
 * upper case); an optional path of `/`-separated segments of `[a-zA-Z0-9._-]`, none empty, none `.` or `..`, no
 * trailing `/`; no query, no fragment, no percent-encoding; at most 2048 bytes in all.
 *
 * @throws InvalidIdentityError naming the first rule the value breaks.
 */
export function parseSpiffeId(value: string): SpiffeId {
  if (typeof value !== "string") throw new InvalidIdentityError("a SPIFFE ID must be a string");
  const fail = (what: string): never => {
    throw new InvalidIdentityError(`SPIFFE ID ${quote(value)} ${what}`);
  };

  // Length first so that nothing below ever scans an unbounded string.
  if (value.length > MAX_SPIFFE_ID_BYTES || Buffer.byteLength(value, "utf8") > MAX_SPIFFE_ID_BYTES) {
    fail(`is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  }
  if (value === "") throw new InvalidIdentityError("the SPIFFE ID is empty");
  if (!value.startsWith(SPIFFE_SCHEME)) {
    if (value.toLowerCase().startsWith(SPIFFE_SCHEME)) fail('has an upper-case scheme: write "spiffe://" in lower case');
    fail('does not start with "spiffe://"');
  }
  // Checked before the character classes so that the caller learns which URI feature is not allowed,
  // rather than only that some character is.
  if (value.includes("?")) fail("has a query");
  if (value.includes("#")) fail("has a fragment");
  if (value.includes("%")) fail("contains percent-encoding, which SPIFFE IDs do not allow");

  const rest = value.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? "" : rest.slice(slash);

  if (trustDomain === "") fail("has no trust domain");
  if (trustDomain.includes("@")) fail("has userinfo in its trust domain");
  if (trustDomain.includes(":")) fail("has a port in its trust domain");
  if (!TRUST_DOMAIN_CHARS.test(trustDomain)) {
    if (TRUST_DOMAIN_CHARS.test(trustDomain.toLowerCase())) fail("has upper-case letters in its trust domain");
    fail("has a trust domain with characters other than lower-case letters, digits, '.', '-' and '_'");
  }

  if (path !== "") {
    if (path.endsWith("/")) fail("has a trailing '/'");
    // path starts with "/", so the first element of the split is always "" and is skipped.
    const segments = path.split("/");
    for (let i = 1; i < segments.length; i++) {
      const segment = segments[i] as string;
      if (segment === "") fail("has an empty path segment ('//')");
      if (segment === "." || segment === "..") fail(`has a '${segment}' path segment`);
      if (!PATH_SEGMENT_CHARS.test(segment)) {
        fail(`has path segment ${quote(segment)} with characters other than letters, digits, '.', '-' and '_'`);
      }
    }
  }

  return { id: value, trustDomain, path };
}

/**
 * Parses the SPIFFE ID of a workload. On top of {@link parseSpiffeId}, the path must be non-empty: an ID without a
 * path names the trust domain itself, and a certificate carrying it would authenticate as the whole domain.
 *
 * @throws InvalidIdentityError naming the first rule the value breaks.
 */
export function parseWorkloadSpiffeId(value: string): SpiffeId {
  const id = parseSpiffeId(value);
  if (id.path === "") {
    throw new InvalidIdentityError(
      `SPIFFE ID ${quote(value)} has no path: a workload ID needs one, e.g. "spiffe://${id.trustDomain}/ns/app"`,
    );
  }
  return id;
}

/**
 * Whether `id` belongs to the trust domain named `trustDomain` (a bare name such as `example.org`, not a
 * `spiffe://` URI). Exact comparison: trust domains are lower-case by definition, so a differently-cased name is
 * another (invalid) domain, not the same one.
 */
export function spiffeIdIsInTrustDomain(id: SpiffeId, trustDomain: string): boolean {
  return id.trustDomain === trustDomain;
}

/**
 * Whether an `xn--` label is a real A-label: valid punycode, decoding to something non-ASCII, and stable when
 * encoded back. A fake A-label is a known way to smuggle a name that displays differently from what it matches.
 */
function isALabel(label: string): boolean {
  const unicode = domainToUnicode(label);
  return unicode !== "" && /[^\x00-\x7f]/.test(unicode) && domainToASCII(unicode) === label;
}

/**
 * Validates a DNS name for a certificate's dNSName SAN and returns it lower-cased, which is the form we store and
 * compare (DNS is case-insensitive; RFC 4343).
 *
 * Accepted: one or more LDH labels (RFC 1123, RFC 5890 §2.3.1) of 1–63 octets, at most 253 octets in all. Single
 * labels such as `localhost` or `web` are allowed because service meshes address workloads by them.
 * Refused: wildcards (we issue certificates for exact names only), a trailing dot (RFC 5280 §4.2.1.6 has no place
 * for the root label), anything non-ASCII (internationalised names must arrive as A-labels, `xn--…`, since the SAN
 * is an IA5String; an `xn--` label must be valid punycode of a non-ASCII name), underscores, and names whose
 * last label is numeric, which clients would take for an IP address.
 *
 * @throws InvalidIdentityError naming the first rule the value breaks.
 */
export function parseDnsName(value: string): string {
  if (typeof value !== "string") throw new InvalidIdentityError("a DNS name must be a string");
  const fail = (what: string): never => {
    throw new InvalidIdentityError(`DNS name ${quote(value)} ${what}`);
  };

  if (value === "") throw new InvalidIdentityError("the DNS name is empty");
  if (value.length > MAX_DNS_NAME_OCTETS) fail(`is longer than ${MAX_DNS_NAME_OCTETS} characters`);
  if (value.includes("*")) fail("is a wildcard: wildcard certificates are not issued, name each host");
  // Any code point above 0x7f, including look-alikes of ASCII letters.
  if (/[^\x00-\x7f]/.test(value)) {
    fail("contains non-ASCII characters: send internationalised names as A-labels (xn--...)");
  }
  if (value.includes(":") || value.startsWith("[")) fail("is an IP address: IP address SANs are not issued");
  if (value.endsWith(".")) fail("ends with a dot: drop the trailing '.'");

  const name = value.toLowerCase();
  const labels = name.split(".");
  for (const label of labels) {
    if (label === "") fail("has an empty label");
    if (label.length > MAX_DNS_LABEL_OCTETS) fail(`has a label longer than ${MAX_DNS_LABEL_OCTETS} characters`);
    if (!LDH_LABEL.test(label)) {
      if (label.startsWith("-") || label.endsWith("-")) fail(`has label ${quote(label)} starting or ending with '-'`);
      fail(`has label ${quote(label)} with characters other than letters, digits and '-'`);
    }
    if (label.startsWith("xn--") && !isALabel(label)) {
      fail(`has label ${quote(label)} which is not a valid A-label (bad punycode, or it decodes to plain ASCII)`);
    }
  }
  if (NUMERIC_LAST_LABEL.test(labels[labels.length - 1] as string)) {
    fail("looks like an IP address (its last label is numeric): IP address SANs are not issued");
  }
  return name;
}
