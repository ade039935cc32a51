import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { HsmUnavailableError, InternalError } from "../common/errors.js";
import type { Signer } from "../signer/signer.js";
import type { AuthorityRecord } from "./model.js";
import { createCrl } from "./ceremony.js";
import { SIGNATURE_HASH_ALGORITHMS } from "./x509/algorithms.js";
import { certificateFields } from "./x509/ca-certificates.js";
import type { CrlEntry, EncodedCrlEntries } from "./x509/crl.js";
import { assembleSignedStructure } from "./x509/signed.js";
import { WorkloadCertificateTemplate } from "./x509/workload-template.js";

/** Where certificates point relying parties for revocation status and the issuer certificate. */
export interface AuthorityUrls {
  readonly crlDistributionPointUrl: string;
  readonly ocspUrl: string;
  readonly caIssuersUrl: string;
}

/** The URLs of this service for one authority, from the public base URL (no trailing slash). */
export function authorityUrls(publicBaseUrl: string, authorityId: string): AuthorityUrls {
  return {
    crlDistributionPointUrl: `${publicBaseUrl}/crl/${authorityId}.crl`,
    ocspUrl: `${publicBaseUrl}/ocsp`,
    caIssuersUrl: `${publicBaseUrl}/ca/${authorityId}.crt`,
  };
}


/**
 * An issuing CA: its certificate, the HSM key that signs for it and the pre-encoded leaf template.
 * Construction refuses a signer whose public key is not the certificate's: a misconfigured key label
 * must stop the service at start-up, not produce certificates nobody can verify.
 */
export class Issuer {
  readonly template: WorkloadCertificateTemplate;
  readonly publicKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  private readonly hash: string;

  constructor(
    readonly authority: AuthorityRecord,
    private readonly signer: Signer,
    /** DER certificates from this issuer up to, not including, the root. */
    readonly chainDer: readonly Buffer[],
    urls: AuthorityUrls,
  ) {
    const fields = certificateFields(authority.certificateDer);
    if (!fields.subjectPublicKeyInfo.equals(signer.publicKeySpki)) {
      throw new InternalError(
        `the key "${signer.keyLabel}" is not the key of authority ${authority.id}: refusing to issue with it`,
      );
    }
    this.publicKey = createPublicKey({ key: fields.subjectPublicKeyInfo, format: "der", type: "spki" });
    this.notBefore = fields.notBefore;
    this.notAfter = fields.notAfter;
    this.hash = SIGNATURE_HASH_ALGORITHMS[signer.signatureAlgorithm];
    this.template = new WorkloadCertificateTemplate({
      issuerNameDer: fields.subjectNameDer,
      issuerSubjectKeyIdentifier: fields.subjectKeyIdentifier,
      signatureAlgorithm: signer.signatureAlgorithm,
      ...urls,
    });
  }

  /** A CRL signed by this issuer's key (see `createCrl`): signed once, verified, never with another key. */
  issueCrl(input: {
    readonly crlNumber: bigint;
    readonly thisUpdate: Date;
    readonly nextUpdate: Date;
    readonly entries: Iterable<CrlEntry> | EncodedCrlEntries;
  }): Promise<Buffer> {
    return createCrl({ signer: this.signer, issuerCertificateDer: this.authority.certificateDer, ...input });
  }

  get id(): string {
    return this.authority.id;
  }

  /**
   * Signs `tbsDer` once through the HSM and returns the certificate, after checking that the signature
   * verifies under this issuer's certificate key. The certificate is assembled from the very bytes that were
   * recorded before signing, so what is stored is what was reserved.
   */
  async sign(tbsDer: Buffer): Promise<Buffer> {
    let signature: Buffer;
    try {
      signature = await this.signer.sign(tbsDer);
    } catch (error) {
      if (error instanceof HsmUnavailableError) throw error;
      throw new HsmUnavailableError("the HSM could not sign; try again later", { cause: error });
    }
    // Verified on libuv's thread pool: as expensive as the CSR check, and the event loop has requests to serve.
    const ok = await new Promise<boolean>((resolve, reject) => {
      verify(this.hash, tbsDer, { key: this.publicKey, dsaEncoding: "der" }, signature, (error, result) =>
        error ? reject(new InternalError("the HSM's signature could not be checked", { cause: error })) : resolve(result),
      );
    });
    if (!ok) {
      throw new InternalError(`the HSM returned a signature that does not verify for authority ${this.id}`);
    }
    return assembleSignedStructure(tbsDer, this.signer.signatureAlgorithm, signature);
  }
}
