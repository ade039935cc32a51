/**
 * The unit a client is counted as for limits and for aggregating its refusals: an IPv4 address, or the /64
 * an IPv6 address belongs to (one host is commonly given a whole /64, so counting single IPv6 addresses
 * would let it use 2^64 allowances). IPv4-mapped IPv6 addresses count as their IPv4 address.
 */
export function clientNetworkOf(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined || remoteAddress === "") return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (mapped) return mapped[1] as string;
  if (!remoteAddress.includes(":")) return remoteAddress;
  const [head = "", tail] = remoteAddress.split("%")[0]?.toLowerCase().split("::") ?? [];
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = Math.max(0, 8 - headGroups.length - tailGroups.length);
  const groups = tail === undefined ? headGroups : [...headGroups, ...new Array<string>(missing).fill("0"), ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
