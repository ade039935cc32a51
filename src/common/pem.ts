/** PEM (RFC 7468) encoding and decoding of DER blobs. */

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/=\s]*$/;

export interface PemBlock {
  label: string;
  der: Buffer;
}

/** Every PEM block in `text`, in order. Throws `TypeError` on a block whose body is not base64. */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    const label = match[1] as string;
    const body = match[2] as string;
    if (!BASE64_BODY.test(body)) throw new TypeError(`PEM block "${label}" has a body that is not base64`);
    blocks.push({ label, der: Buffer.from(body.replace(/\s+/g, ""), "base64") });
  }
  return blocks;
}

/**
 * The DER of the single block labelled `label` in `text`. Throws `TypeError` when there is none, or more
 * than one, or when anything but whitespace surrounds it.
 */
export function decodePem(text: string, label: string): Buffer {
  const blocks = decodePemBlocks(text);
  if (blocks.length !== 1) throw new TypeError(`expected exactly one PEM block, found ${blocks.length}`);
  const [block] = blocks as [PemBlock];
  if (block.label !== label) throw new TypeError(`expected a PEM "${label}" block, found "${block.label}"`);
  const outside = text.replace(PEM_BLOCK, "").trim();
  if (outside !== "") throw new TypeError("unexpected text around the PEM block");
  if (block.der.length === 0) throw new TypeError(`PEM "${label}" block is empty`);
  return block.der;
}

export function encodePem(der: Uint8Array, label: string): string {
  const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export const certificateToPem = (der: Uint8Array): string => encodePem(der, "CERTIFICATE");
