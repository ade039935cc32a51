import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/errors.js";
import { loadConfig } from "../../src/config/config.js";

describe("database settings", () => {
  it("waits 5 s for a foreign write lock by default, and ANCHORAGE_DB_BUSY_TIMEOUT_MS changes it", () => {
    expect(loadConfig({}, "/srv/anchorage").database.busyTimeoutMs).toBe(5_000);
    expect(loadConfig({ ANCHORAGE_DB_BUSY_TIMEOUT_MS: "1500" }, "/srv/anchorage").database.busyTimeoutMs).toBe(1_500);
  });

  it("refuses a wait that is not a positive number of milliseconds, naming the variable", () => {
    for (const value of ["0", "-1", "soon"]) {
      expect(() => loadConfig({ ANCHORAGE_DB_BUSY_TIMEOUT_MS: value }, "/srv/anchorage")).toThrow(ConfigError);
      expect(() => loadConfig({ ANCHORAGE_DB_BUSY_TIMEOUT_MS: value }, "/srv/anchorage")).toThrow(/ANCHORAGE_DB_BUSY_TIMEOUT_MS/);
    }
  });
});
