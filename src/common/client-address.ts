import { ipv6Groups } from "./ip-address.js";

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
  const groups = ipv6Groups(remoteAddress.split("%")[0]?.toLowerCase() ?? "");
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
