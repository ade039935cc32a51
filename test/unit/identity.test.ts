import { describe, expect, it } from "vitest";

import {
  InvalidIdentityError,
  parseDnsName,
  parseSpiffeId,
  parseWorkloadSpiffeId,
  spiffeIdIsInTrustDomain,
} from "../../src/policy/identity.js";

/** Asserts that `fn` throws an InvalidIdentityError whose message contains `fragment`. */
function expectRefusal(fn: () => unknown, fragment: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(InvalidIdentityError);
  expect((thrown as Error).message).toContain(fragment);
}

describe("parseSpiffeId", () => {
  it.each([
    ["spiffe://example.org", "example.org", ""],
    ["spiffe://example.org/ns/default/sa/web", "example.org", "/ns/default/sa/web"],
    ["spiffe://a", "a", ""],
    ["spiffe://my_trust-domain.9/x", "my_trust-domain.9", "/x"],
    ["spiffe://example.org/Upper.Case_seg-1/.../a..b/.x", "example.org", "/Upper.Case_seg-1/.../a..b/.x"],
  ])("accepts %s", (value, trustDomain, path) => {
    expect(parseSpiffeId(value)).toEqual({ id: value, trustDomain, path });
  });

  it("accepts an ID of exactly 2048 bytes", () => {
    const prefix = "spiffe://example.org/";
    const value = prefix + "a".repeat(2048 - prefix.length);
    expect(parseSpiffeId(value).id).toBe(value);
  });

  it.each([
    ["", "empty"],
    ["example.org/x", 'does not start with "spiffe://"'],
    ["https://example.org/x", 'does not start with "spiffe://"'],
    ["spiffe:/example.org/x", 'does not start with "spiffe://"'],
    ["spiffe:example.org", 'does not start with "spiffe://"'],
    ["SPIFFE://example.org/x", "upper-case scheme"],
    ["Spiffe://example.org/x", "upper-case scheme"],
    [" spiffe://example.org/x", 'does not start with "spiffe://"'],
    ["spiffe://", "has no trust domain"],
    ["spiffe:///x", "has no trust domain"],
    ["spiffe://Example.org/x", "upper-case letters in its trust domain"],
    ["spiffe://example.org:8443/x", "has a port"],
    ["spiffe://user@example.org/x", "has userinfo"],
    ["spiffe://user:pw@example.org/x", "has userinfo"],
    ["spiffe://exa mple.org/x", "trust domain with characters other than"],
    ["spiffe://exa+mple.org/x", "trust domain with characters other than"],
    ["spiffe://bücher.example/x", "trust domain with characters other than"],
    ["spiffe://[::1]/x", "has a port"],
    ["spiffe://example.org/x?y=1", "has a query"],
    ["spiffe://example.org?x", "has a query"],
    ["spiffe://example.org/x#frag", "has a fragment"],
    ["spiffe://example.org/x%20y", "percent-encoding"],
    ["spiffe://example%2Eorg/x", "percent-encoding"],
    ["spiffe://example.org/", "trailing '/'"],
    ["spiffe://example.org/x/", "trailing '/'"],
    ["spiffe://example.org//x", "empty path segment"],
    ["spiffe://example.org/a//b", "empty path segment"],
    ["spiffe://example.org/./x", "'.' path segment"],
    ["spiffe://example.org/a/../b", "'..' path segment"],
    ["spiffe://example.org/..", "'..' path segment"],
    ["spiffe://example.org/a b", "characters other than letters, digits"],
    ["spiffe://example.org/a:b", "characters other than letters, digits"],
    ["spiffe://example.org/a@b", "characters other than letters, digits"],
    ["spiffe://example.org/ä", "characters other than letters, digits"],
    ["spiffe://example.org/a\u0000b", "characters other than letters, digits"],
    ["spiffe://example.org/a\\b", "characters other than letters, digits"],
  ])("refuses %j (%s)", (value, fragment) => {
    expectRefusal(() => parseSpiffeId(value), fragment);
  });

  it("refuses an ID longer than 2048 bytes, counting UTF-8 bytes rather than characters", () => {
    const prefix = "spiffe://example.org/";
    expectRefusal(() => parseSpiffeId(prefix + "a".repeat(2049 - prefix.length)), "longer than 2048 bytes");
    // 1000 two-byte characters: fewer than 2048 UTF-16 units, more than 2048 bytes.
    expectRefusal(() => parseSpiffeId(prefix + "é".repeat(1100)), "longer than 2048 bytes");
  });

  it("names the offending value in the message, quoted and truncated", () => {
    expectRefusal(() => parseSpiffeId("spiffe://example.org/x?y"), 'SPIFFE ID "spiffe://example.org/x?y" has a query');
    const long = `spiffe://example.org/${"a".repeat(500)}?q`;
    let message = "";
    try {
      parseSpiffeId(long);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("has a query");
    expect(message.length).toBeLessThan(200);
  });

  it("refuses a value that is not a string", () => {
    expectRefusal(() => parseSpiffeId(42 as unknown as string), "must be a string");
  });
});

describe("parseWorkloadSpiffeId", () => {
  it("accepts an ID with a path", () => {
    expect(parseWorkloadSpiffeId("spiffe://example.org/ns/a")).toEqual({
      id: "spiffe://example.org/ns/a",
      trustDomain: "example.org",
      path: "/ns/a",
    });
  });

  it.each([
    ["spiffe://example.org", "has no path"],
    ["spiffe://example.org/", "trailing '/'"],
    ["spiffe://example.org/ns/", "trailing '/'"],
    ["spiffe://example.org/a/../b", "'..' path segment"],
    ["spiffe://example.org/x?y", "has a query"],
  ])("refuses %j (%s)", (value, fragment) => {
    expectRefusal(() => parseWorkloadSpiffeId(value), fragment);
  });
});

describe("spiffeIdIsInTrustDomain", () => {
  const id = parseSpiffeId("spiffe://example.org/ns/a");

  it.each([
    ["example.org", true],
    ["example.com", false],
    ["Example.org", false],
    ["org", false],
    ["sub.example.org", false],
    ["spiffe://example.org", false],
    ["", false],
  ])("%j → %s", (trustDomain, expected) => {
    expect(spiffeIdIsInTrustDomain(id, trustDomain)).toBe(expected);
  });
});

describe("parseDnsName", () => {
  it.each([
    ["example.com", "example.com"],
    ["Web.Example.COM", "web.example.com"],
    ["localhost", "localhost"],
    ["web", "web"],
    ["a", "a"],
    ["a-b.c-d.example", "a-b.c-d.example"],
    ["123.example.com", "123.example.com"],
    ["1a.example.com", "1a.example.com"],
    ["api.payments.svc.cluster.local", "api.payments.svc.cluster.local"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    ["XN--BCHER-KVA.example", "xn--bcher-kva.example"],
    ["example.123a", "example.123a"],
    [`${"a".repeat(63)}.example`, `${"a".repeat(63)}.example`],
  ])("accepts %j as %j", (value, expected) => {
    expect(parseDnsName(value)).toBe(expected);
  });

  it("accepts a 253-octet name", () => {
    const name = [`${"a".repeat(61)}`, "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
    expect(name).toHaveLength(253);
    expect(parseDnsName(name)).toBe(name);
  });

  it.each([
    ["", "empty"],
    ["*.example.com", "wildcard certificates are not issued"],
    ["*", "wildcard certificates are not issued"],
    ["a*.example.com", "wildcard certificates are not issued"],
    ["example.com.", "ends with a dot"],
    [".example.com", "empty label"],
    ["a..example.com", "empty label"],
    ["-a.example.com", "starting or ending with '-'"],
    ["a-.example.com", "starting or ending with '-'"],
    ["a_b.example.com", "characters other than letters, digits and '-'"],
    ["a b.example.com", "characters other than letters, digits and '-'"],
    ["example.com/x", "characters other than letters, digits and '-'"],
    ["user@example.com", "characters other than letters, digits and '-'"],
    ["a\u0000.example.com", "characters other than letters, digits and '-'"],
    ["bücher.example", "non-ASCII"],
    ["\u0430pple.com", "non-ASCII"], // Cyrillic а
    ["xn--zz.example", "not a valid A-label"],
    ["xn--bucher-xyd.example", "not a valid A-label"], // "bücher" with a combining umlaut: not NFC
    ["xn--ab-m1t.example", "not a valid A-label"], // a zero-width joiner between "a" and "b"
    ["xn--abc-.example", "starting or ending with '-'"], // the only way to punycode plain ASCII
    ["10.0.0.1", "last label is numeric"],
    ["1.2.3", "last label is numeric"],
    ["10", "last label is numeric"],
    ["example.0x7f", "last label is numeric"],
    ["0x7f000001", "last label is numeric"],
    ["host.123", "last label is numeric"],
    ["::1", "is an IP address"],
    ["[2001:db8::1]", "is an IP address"],
    ["example.com:443", "is an IP address"],
    [`${"a".repeat(64)}.example`, "longer than 63"],
  ])("refuses %j (%s)", (value, fragment) => {
    expectRefusal(() => parseDnsName(value), fragment);
  });

  it("refuses a name longer than 253 octets", () => {
    const name = ["a".repeat(62), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
    expect(name).toHaveLength(254);
    expectRefusal(() => parseDnsName(name), "longer than 253");
  });

  it("refuses a value that is not a string", () => {
    expectRefusal(() => parseDnsName(undefined as unknown as string), "must be a string");
  });
});
