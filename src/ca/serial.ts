import { randomBytes } from "node:crypto";
import { BadUserInputError } from "../common/errors.js";

/**
 * A certificate serial number: 128 bits of CSPRNG output (RFC 5280 asks for at most 20 octets; CA/B rules
 * for at least 64 bits of entropy), with a non-zero first byte so that the lower-case hex form has no
 * leading zeros to strip and reads the same everywhere (our API, openssl, the CRL).
 */
export function generateSerial(): Buffer {
  for (;;) {
    const serial = randomBytes(16);
    if (serial[0] !== 0) return serial;
  }
}

const SERIAL_HEX = /^[0-9a-f]{1,40}$/;

/**
 * A serial as callers may type it (any case, a leading zero digit dropped as some tools print it) in the
 * API's form: lower-case hex of the serial's bytes, without separators.
 */
export function normaliseSerial(serial: string): string {
  const normalised = serial.toLowerCase();
  if (!SERIAL_HEX.test(normalised)) throw new BadUserInputError("serial must be lower-case hex without separators");
  return normalised.length % 2 === 1 ? `0${normalised}` : normalised;
}
