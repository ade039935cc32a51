import { SoftwareKeyStore } from "../../src/signer/software-key-store.js";
import { signerContract } from "./signer.contract.js";

signerContract("SoftwareKeyStore", async () => {
  const store = new SoftwareKeyStore();
  return { store, cleanup: () => store.close() };
});
