/**
 * The structured logger the code base writes to. It is the subset of pino's API we use, so the composition
 * root can hand in pino and tests can hand in a collector. Log fields must never carry keys, PINs, tokens or
 * API keys: log identifiers and hashes instead.
 */
export interface Logger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
  child(bindings: object): Logger;
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
