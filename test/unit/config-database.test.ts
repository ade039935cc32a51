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

  it("uses SQLite in the data folder unless ANCHORAGE_DATABASE_URL names a PostgreSQL server", () => {
    expect(loadConfig({}, "/srv/anchorage").database.url).toBeUndefined();
    const config = loadConfig({ ANCHORAGE_DATABASE_URL: "postgres://ca@db.internal:5432/anchorage", ANCHORAGE_DB_POOL_SIZE: "20" }, "/srv/anchorage");
    expect(config.database).toMatchObject({ url: "postgres://ca@db.internal:5432/anchorage", poolSize: 20 });
  });

  it("refuses a database URL of another scheme and a pool that is not a positive size, naming the variable", () => {
    for (const [name, value] of [
      ["ANCHORAGE_DATABASE_URL", "mysql://ca@db.internal/anchorage"],
      ["ANCHORAGE_DATABASE_URL", "/srv/anchorage/anchorage.db"],
      ["ANCHORAGE_DB_POOL_SIZE", "0"],
      ["ANCHORAGE_DB_POOL_SIZE", "many"],
    ] as const) {
      expect(() => loadConfig({ [name]: value }, "/srv/anchorage")).toThrow(ConfigError);
      expect(() => loadConfig({ [name]: value }, "/srv/anchorage")).toThrow(new RegExp(name));
    }
  });
});
