/**
 * Initialises a token through PKCS#11 itself (C_InitToken, then C_InitPIN as the security officer), so that
 * its PINs stay inside this process: a tool such as `softhsm2-util --pin ...` would carry them on its command
 * line, which every local user can read in /proc.
 */
import pkcs11js from "pkcs11js";
import type { PKCS11 } from "pkcs11js";
import { BadUserInputError, HsmUnavailableError } from "../../common/errors.js";
import { tokenLabelOf } from "./pkcs11-key-store.js";

// pkcs11js is CommonJS and builds its exports at run time, so Node's ESM loader sees only a default export.
const { CKF_OS_LOCKING_OK, CKF_RW_SESSION, CKF_SERIAL_SESSION, CKF_TOKEN_INITIALIZED, CKU_SO } = pkcs11js;

/** PKCS#11 token labels are exactly 32 bytes, blank padded. */
const LABEL_BYTES = 32;

export interface TokenInitialisation {
  readonly modulePath: string;
  readonly label: string;
  readonly userPin: string;
  readonly soPin: string;
}

/**
 * Initialises a token labelled `label` in a free slot, with the given security-officer and user PINs.
 * Idempotent: when a token with that label exists it does nothing and returns false (modules would happily
 * make a second one with the same label, and clients find tokens by label). Finalises the module before
 * returning, so call it before any key store of this process opens the module.
 */
export function initialiseToken(options: TokenInitialisation): boolean {
  const labelBytes = Buffer.byteLength(options.label, "utf8");
  if (labelBytes === 0 || labelBytes > LABEL_BYTES || options.label !== options.label.trim()) {
    throw new BadUserInputError(`token label must be 1 to ${LABEL_BYTES} bytes without leading or trailing spaces`);
  }
  if (options.userPin.length === 0 || options.soPin.length === 0) throw new BadUserInputError("token PINs must not be empty");

  const api = new pkcs11js.PKCS11();
  try {
    api.load(options.modulePath);
  } catch (error) {
    throw new HsmUnavailableError(`cannot load the PKCS#11 module "${options.modulePath}"`, { cause: error });
  }
  try {
    // As the key store does: modules that serve several threads (p11-kit's client among them) refuse an
    // initialisation without OS locking (CKR_CANT_LOCK).
    api.C_Initialize({ flags: CKF_OS_LOCKING_OK });
    try {
      return initialise(api, options);
    } finally {
      api.C_Finalize();
    }
  } catch (error) {
    if (error instanceof BadUserInputError || error instanceof HsmUnavailableError) throw error;
    // The module's error names a return value, never a PIN.
    throw new HsmUnavailableError(`cannot initialise token "${options.label}": ${(error as Error).message}`, { cause: error });
  } finally {
    api.close();
  }
}

function initialise(api: PKCS11, options: TokenInitialisation): boolean {
  if (slotWithLabel(api, options.label)) return false;
  const free = api.C_GetSlotList(true).find((slot) => (api.C_GetTokenInfo(slot).flags & CKF_TOKEN_INITIALIZED) === 0);
  if (!free) throw new HsmUnavailableError(`the PKCS#11 module has no free slot for token "${options.label}"`);
  api.C_InitToken(free, options.soPin, paddedLabel(options.label));
  // SoftHSM moves a token it has just initialised to a new slot id: find it again by label.
  const slot = slotWithLabel(api, options.label);
  if (!slot) throw new HsmUnavailableError(`token "${options.label}" is not found after its initialisation`);
  const session = api.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
  try {
    api.C_Login(session, CKU_SO, options.soPin);
    try {
      api.C_InitPIN(session, options.userPin);
    } finally {
      api.C_Logout(session);
    }
  } finally {
    api.C_CloseSession(session);
  }
  return true;
}

function slotWithLabel(api: PKCS11, label: string): Buffer | undefined {
  return api.C_GetSlotList(true).find((slot) => tokenLabelOf(api.C_GetTokenInfo(slot)) === label);
}

/** C_InitToken reads exactly 32 bytes of label. */
function paddedLabel(label: string): string {
  return label + " ".repeat(LABEL_BYTES - Buffer.byteLength(label, "utf8"));
}
