import { describe, expect, it } from "vitest";
import { SigningBudget } from "../../src/revocation/signing-budget.js";

describe("SigningBudget", () => {
  const takeAll = (budget: SigningBudget, attempts: number): number =>
    Array.from({ length: attempts }, () => budget.tryTake()).filter(Boolean).length;

  it("grants the burst at once, then refills at the rate, never above the burst", () => {
    let now = 0;
    const budget = new SigningBudget({ perSecond: 10, burst: 5 }, () => now);
    expect(takeAll(budget, 100)).toBe(5);
    now += 300;
    expect(takeAll(budget, 100)).toBe(3);
    now += 60_000;
    expect(takeAll(budget, 100)).toBe(5);
  });

  it("signs nothing with a rate of 0, and at least one at a time with a burst of 0", () => {
    let now = 0;
    const off = new SigningBudget({ perSecond: 0, burst: 50 }, () => now);
    const narrow = new SigningBudget({ perSecond: 2, burst: 0 }, () => now);
    expect(takeAll(off, 10)).toBe(0);
    expect(takeAll(narrow, 10)).toBe(1);
    now += 10_000;
    expect(takeAll(off, 10)).toBe(0);
    expect(takeAll(narrow, 10)).toBe(1);
  });
});
