/**
 * The outer SIGNED{} wrapper shared by Certificate (RFC 5280 §4.1), CertificateList (RFC 5280 §5.1) and
 * CertificationRequest (RFC 2986 §4.2).
 */
import type { SignatureAlgorithmName } from "../../signer/signer.js";
import { signatureAlgorithmIdentifier } from "./algorithms.js";
import { TAG, headerSize, readTlv, tlvSize, writeHeader } from "./der.js";

/**
 * DER `SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }`: a Certificate, CertificateList
 * or CertificationRequest, from its to-be-signed DER, the algorithm the signer used, and the signature value
 * exactly as it goes into the BIT STRING (ECDSA: the DER Ecdsa-Sig-Value; RSA: the PKCS#1 v1.5 block).
 * The BIT STRING always has 0 unused bits, since signatures are whole octets.
 *
 * @example
 * const tbs = template.buildTbs(fields);
 * const certificate = assembleSignedStructure(tbs, signer.signatureAlgorithm, await signer.sign(tbs));
 */
export function assembleSignedStructure(
  tbs: Buffer,
  signatureAlgorithm: SignatureAlgorithmName,
  signatureValue: Buffer,
): Buffer {
  // A cheap structural check: a truncated or concatenated TBS would otherwise be signed into garbage.
  const outer = readTlv(tbs, 0);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== tbs.length) {
    throw new TypeError("tbs must be exactly one DER SEQUENCE");
  }
  if (signatureValue.length === 0) throw new TypeError("signatureValue is empty");
  const algorithm = signatureAlgorithmIdentifier(signatureAlgorithm);
  const bitStringContent = 1 + signatureValue.length;
  const contentLength = tbs.length + algorithm.length + tlvSize(bitStringContent);
  const out = Buffer.allocUnsafe(headerSize(contentLength) + contentLength);
  let at = writeHeader(out, 0, TAG.SEQUENCE, contentLength);
  at += tbs.copy(out, at);
  at += algorithm.copy(out, at);
  at = writeHeader(out, at, TAG.BIT_STRING, bitStringContent);
  out[at++] = 0;
  signatureValue.copy(out, at);
  return out;
}
