/**
 * The SPIFFE signer source: grants `attested_workload` only while the workload's X.509-SVID,
 * fetched from the SPIFFE Workload API, validates (chain, validity, trust domain, ID selector).
 * `sub` becomes the SPIFFE ID and the passport carries provenance (SPEC §9.7, an extension):
 * `{profile: "trustplane-spiffe-spire-k8s-v1", spiffe_id, spiffe_trust_domain,
 * posture: "spiffe_svid_verified"}`. The verifier does not re-verify the SVID per request; it
 * trusts the broker's issuer key from the trust material (docs/spiffe.md).
 */
import type { SignerSource, SourceGrant } from './broker.js';

export const SPIFFE_PROFILE = 'trustplane-spiffe-spire-k8s-v1';
export const SPIFFE_POSTURE = 'spiffe_svid_verified';

/** What the source needs from an X.509-SVID source (WorkloadApiX509Source satisfies it). */
export interface SvidStatusSource {
  status(): { ok: true; identity: { spiffeId: string; trustDomain: string; notAfterMs?: number } } | { ok: false; code: string; detail: string };
}

export function spiffeSource(svids: SvidStatusSource): SignerSource {
  return {
    keyBinding: 'attested_workload',
    grant(): SourceGrant {
      let s: ReturnType<SvidStatusSource['status']>;
      try {
        s = svids.status();
      } catch (err) {
        return { ok: false, reason: 'workload_attestation_unavailable', detail: `SVID source failed: ${err instanceof Error ? err.message : String(err)}`, retryable: true };
      }
      if (!s.ok) {
        const unavailable = s.code === 'svid_unavailable';
        return {
          ok: false,
          reason: unavailable ? 'workload_attestation_unavailable' : 'workload_attestation_failed',
          detail: `${s.code}: ${s.detail}`,
          retryable: unavailable,
        };
      }
      const { spiffeId, trustDomain, notAfterMs } = s.identity;
      return {
        ok: true,
        subject: spiffeId,
        // A passport attested by this SVID does not outlive it.
        ...(notAfterMs !== undefined ? { notAfterMs } : {}),
        provenance: { profile: SPIFFE_PROFILE, spiffe_id: spiffeId, spiffe_trust_domain: trustDomain, posture: SPIFFE_POSTURE },
      };
    },
  };
}
