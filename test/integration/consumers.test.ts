/**
 * Trust bundle consumers against the real service: an admin registers each consumer with the SPIFFE ID allowed
 * to speak for it, and only that identity's certificate (over mutual TLS) or an admin key may acknowledge for
 * it. Any other workload certificate is FORBIDDEN and changes nothing, strangers cannot create consumers, and
 * every acknowledgement, accepted or refused, leaves an audit event.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ok, refusal } from "../support/graphql.js";
import { makeCsr, requireTools, startService, type RunningService } from "../support/service.js";

const missing = requireTools(["softhsm2-util", "openssl"]);

const ISSUE = `mutation ($input: IssueCertificateInput!) { issueCertificate(input: $input) { serial certificatePem chainPem } }`;
const ACKNOWLEDGE = `mutation ($id: String!, $seq: Int!) { acknowledgeTrustBundle(consumerId: $id, sequence: $seq) }`;
const REGISTER = `mutation ($input: RegisterTrustBundleConsumerInput!) {
  registerTrustBundleConsumer(input: $input) { consumerId spiffeId acknowledgedSequence acknowledgedAt current }
}`;
const UNREGISTER = `mutation ($id: String!) { unregisterTrustBundleConsumer(consumerId: $id) }`;
const CONSUMERS = `{ trustBundleConsumers { currentSequence consumers { consumerId spiffeId acknowledgedSequence } } }`;

const WEB2 = "spiffe://anchorage.test/ns/default/sa/web2";
const ISTIOD = "spiffe://anchorage.test/ns/istio-system/sa/istiod";
const MAX_CONSUMERS = 3;

interface Credential {
  serial: string;
  cert: string;
  key: string;
}

describe.skipIf(missing !== undefined)(`trust bundle consumers${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let service: RunningService;
  let web2: Credential;
  let istiod: Credential;
  let sequence: number;

  const admin = (query: string, variables?: Record<string, unknown>) => service.gql(query, variables, { bearer: service.adminKey });
  const as = (credential: Credential, query: string, variables?: Record<string, unknown>) =>
    service.gql(query, variables, { cert: credential.cert, key: credential.key, newConnection: true });
  const storedSequence = (consumerId: string) => service.sqlValue("SELECT acknowledged_sequence FROM trust_bundle_consumers WHERE consumer_id = ?", consumerId);
  const auditCount = (type: string, subject: string) => Number(service.sqlValue("SELECT count(*) FROM audit_events WHERE type = ? AND subject = ?", type, subject));

  async function workload(spiffeId: string): Promise<Credential> {
    const token = ok(await admin(`mutation ($id: String!) { createEnrollmentToken(input: { spiffeId: $id }) { token } }`, { id: spiffeId })).createEnrollmentToken.token;
    const { csrPem, keyPem } = makeCsr({ spiffeId });
    const issued = ok(await service.gql(ISSUE, { input: { csr: csrPem, token } })).issueCertificate;
    return { serial: issued.serial, cert: issued.certificatePem + issued.chainPem, key: keyPem };
  }

  beforeAll(async () => {
    service = await startService({ env: { ANCHORAGE_MAX_TRUST_BUNDLE_CONSUMERS: String(MAX_CONSUMERS) } });
    web2 = await workload(WEB2);
    istiod = await workload(ISTIOD);
    sequence = ok(await service.gql("{ trustBundle { sequence } }")).trustBundle.sequence;
  }, 90_000);

  afterAll(async () => {
    await service?.cleanup();
  });

  it("refuses a workload certificate that acknowledges for a consumer nobody registered, and creates nothing", async () => {
    const forged = refusal(await as(web2, ACKNOWLEDGE, { id: "fake-consumer-1", seq: sequence }));
    expect(forged.code).toBe("FORBIDDEN");
    expect(service.sqlValue("SELECT count(*) FROM trust_bundle_consumers")).toBe(0);
    expect(auditCount("consumer.acknowledgement_refused", "fake-consumer-1")).toBe(1);
    expect(service.sqlValue("SELECT actor FROM audit_events WHERE type = 'consumer.acknowledgement_refused' AND subject = 'fake-consumer-1'")).toBe(`certificate:${web2.serial}`);
    // An admin cannot conjure one by acknowledging either: consumers come from registrations only.
    expect(refusal(await admin(ACKNOWLEDGE, { id: "fake-consumer-2", seq: sequence })).code).toBe("FORBIDDEN");
    expect(service.sqlValue("SELECT count(*) FROM trust_bundle_consumers")).toBe(0);
    expect(refusal(await service.gql(ACKNOWLEDGE, { id: "fake-consumer-3", seq: sequence }, { newConnection: true })).code).toBe("UNAUTHENTICATED");
  });

  it("lets only the registered identity (or an admin) move a consumer forward, and audits every acknowledgement", async () => {
    const registered = ok(await admin(REGISTER, { input: { consumerId: "istiod", spiffeId: ISTIOD } })).registerTrustBundleConsumer;
    expect(registered).toEqual({ consumerId: "istiod", spiffeId: ISTIOD, acknowledgedSequence: 0, acknowledgedAt: null, current: false });
    expect(auditCount("consumer.registered", "istiod")).toBe(1);

    const forged = refusal(await as(web2, ACKNOWLEDGE, { id: "istiod", seq: sequence }));
    expect(forged.code).toBe("FORBIDDEN");
    expect(storedSequence("istiod")).toBe(0);
    expect(auditCount("consumer.acknowledgement_refused", "istiod")).toBe(1);

    ok(await as(istiod, ACKNOWLEDGE, { id: "istiod", seq: sequence }));
    expect(storedSequence("istiod")).toBe(sequence);
    expect(auditCount("consumer.acknowledged", "istiod")).toBe(1);
    const event = service.sqlValue("SELECT actor || ' ' || details FROM audit_events WHERE type = 'consumer.acknowledged' AND subject = 'istiod'") as string;
    expect(event.slice(0, event.indexOf(" "))).toBe(`certificate:${istiod.serial}`);
    expect(JSON.parse(event.slice(event.indexOf(" ") + 1))).toMatchObject({ sequence, acknowledgedSequence: sequence, spiffeId: ISTIOD });

    // Acknowledging an older version is accepted (and audited) but never moves the record back.
    ok(await admin(ACKNOWLEDGE, { id: "istiod", seq: 1 }));
    expect(storedSequence("istiod")).toBe(sequence);
    expect(auditCount("consumer.acknowledged", "istiod")).toBe(2);
    // The registered identity speaks for its own consumer only.
    expect(refusal(await as(istiod, ACKNOWLEDGE, { id: "fake-consumer-1", seq: sequence })).code).toBe("FORBIDDEN");
    expect(refusal(await as(istiod, REGISTER, { input: { consumerId: "istiod-2", spiffeId: ISTIOD } })).code).toBe("UNAUTHENTICATED");

    const listed = ok(await admin(CONSUMERS)).trustBundleConsumers.consumers;
    expect(listed).toEqual([{ consumerId: "istiod", spiffeId: ISTIOD, acknowledgedSequence: sequence }]);
  });

  it("validates registrations, keeps their number bounded, and unregisters", async () => {
    expect(refusal(await admin(REGISTER, { input: { consumerId: "bad id", spiffeId: ISTIOD } })).code).toBe("BAD_USER_INPUT");
    expect(refusal(await admin(REGISTER, { input: { consumerId: "mesh-a", spiffeId: "https://not-spiffe" } })).code).toBe("BAD_USER_INPUT");
    expect(service.sqlValue("SELECT count(*) FROM trust_bundle_consumers")).toBe(1);

    // Re-registering rebinds the identity and keeps the acknowledged version.
    const rebound = ok(await admin(REGISTER, { input: { consumerId: "istiod", spiffeId: WEB2 } })).registerTrustBundleConsumer;
    expect(rebound).toMatchObject({ spiffeId: WEB2, acknowledgedSequence: sequence });
    ok(await as(web2, ACKNOWLEDGE, { id: "istiod", seq: sequence }));
    expect(refusal(await as(istiod, ACKNOWLEDGE, { id: "istiod", seq: sequence })).code).toBe("FORBIDDEN");

    // Without a SPIFFE ID only admins acknowledge for the consumer.
    ok(await admin(REGISTER, { input: { consumerId: "mesh-admin-only" } }));
    expect(refusal(await as(web2, ACKNOWLEDGE, { id: "mesh-admin-only", seq: sequence })).code).toBe("FORBIDDEN");
    ok(await admin(ACKNOWLEDGE, { id: "mesh-admin-only", seq: sequence }));

    ok(await admin(REGISTER, { input: { consumerId: "mesh-b", spiffeId: ISTIOD } }));
    const full = refusal(await admin(REGISTER, { input: { consumerId: "mesh-c", spiffeId: ISTIOD } }));
    expect(full.code).toBe("POLICY_VIOLATION");
    expect(service.sqlValue("SELECT count(*) FROM trust_bundle_consumers")).toBe(MAX_CONSUMERS);

    expect(ok(await admin(UNREGISTER, { id: "mesh-b" })).unregisterTrustBundleConsumer).toBe(true);
    expect(auditCount("consumer.unregistered", "mesh-b")).toBe(1);
    expect(refusal(await admin(UNREGISTER, { id: "mesh-b" })).code).toBe("NOT_FOUND");
    expect(refusal(await as(istiod, ACKNOWLEDGE, { id: "mesh-b", seq: sequence })).code).toBe("FORBIDDEN");
    expect(ok(await admin(CONSUMERS)).trustBundleConsumers.consumers.map((consumer: { consumerId: string }) => consumer.consumerId)).toEqual([
      "istiod",
      "mesh-admin-only",
    ]);
  });
});
