import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-log.js";
import { RefusalAggregator } from "../../src/audit/refusal-aggregator.js";
import { FixedClock } from "../../src/common/clock.js";
import { silentLogger } from "../../src/common/logger.js";

const refusal = (remoteAddress: string, code = "UNAUTHENTICATED", actor = "token:unknown"): AuditEvent => ({
  type: "issuance.refused",
  actor,
  outcome: "failure",
  code,
  remoteAddress,
  details: { reason: "the enrollment token is unknown, expired or used up" },
});

function aggregator(settings: { individuallyRecorded: number; maxKinds?: number }) {
  const written: AuditEvent[] = [];
  const clock = new FixedClock(new Date("2026-01-01T00:00:00Z"));
  const refusals = new RefusalAggregator((event) => written.push(event), clock, silentLogger, {
    windowSeconds: 60,
    maxKinds: settings.maxKinds ?? 100,
    individuallyRecorded: settings.individuallyRecorded,
  });
  return { written, clock, refusals };
}

describe("RefusalAggregator", () => {
  it("records the first refusals of a kind as they come and counts the rest into one event per window", () => {
    const { written, clock, refusals } = aggregator({ individuallyRecorded: 2 });
    for (let index = 0; index < 1000; index++) refusals.record(refusal("192.0.2.1"));
    refusals.record(refusal("192.0.2.1", "BAD_USER_INPUT"));
    refusals.record(refusal("192.0.2.2"));
    expect(written).toHaveLength(4);
    clock.advance(60_000);
    refusals.flush();
    expect(written).toHaveLength(5);
    expect(written[4]).toMatchObject({
      type: "issuance.refused",
      actor: "token:unknown",
      code: "UNAUTHENTICATED",
      remoteAddress: "192.0.2.1",
      details: { count: 998, since: "2026-01-01T00:00:00.000Z", until: "2026-01-01T00:01:00.000Z" },
    });
    // A new window starts afresh.
    refusals.record(refusal("192.0.2.1"));
    expect(written).toHaveLength(6);
    refusals.stop();
    expect(written).toHaveLength(6);
  });

  it("names the actor in a count only when every refusal counted came from it", () => {
    const { written, refusals } = aggregator({ individuallyRecorded: 0 });
    for (let index = 0; index < 5; index++) refusals.record(refusal("192.0.2.1", "RATE_LIMITED", "token:tok_busy"));
    for (let index = 0; index < 5; index++) refusals.record(refusal("192.0.2.2", "RATE_LIMITED", `token:tok_${index}`));
    refusals.stop();
    expect(written.map((event) => [event.remoteAddress, event.actor, event.details?.count])).toEqual([
      ["192.0.2.1", "token:tok_busy", 5],
      ["192.0.2.2", "anonymous", 5],
    ]);
  });

  it("counts an IPv6 /64 as one client, and lumps new clients together past maxKinds", () => {
    const { written, refusals } = aggregator({ individuallyRecorded: 0, maxKinds: 2 });
    for (let host = 1; host <= 50; host++) refusals.record(refusal(`2001:db8:0:1::${host.toString(16)}`));
    for (let network = 2; network <= 11; network++) refusals.record(refusal(`2001:db8:0:${network}::1`));
    expect(written).toHaveLength(0);
    refusals.stop();
    expect(written.map((event) => [event.remoteAddress, event.details?.count])).toEqual([
      ["2001:db8:0:1::/64", 50],
      ["2001:db8:0:2::/64", 1],
      ["*", 9],
    ]);
  });
});
