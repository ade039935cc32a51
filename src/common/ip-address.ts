/**
 * The eight 16-bit groups of an IPv6 address (hex text, as written), with "::" expanded to the zero groups
 * it stands for. For addresses without an embedded IPv4 part or a zone; the caller strips or refuses those.
 */
export function ipv6Groups(address: string): string[] {
  const [head = "", tail] = address.split("::");
  const groups = (part: string): string[] => (part === "" ? [] : part.split(":"));
  const left = groups(head);
  if (tail === undefined) return left;
  const right = groups(tail);
  return [...left, ...new Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
}
