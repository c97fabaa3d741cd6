/**
 * Header hygiene for a verifying reverse proxy. On an allowed request the caller's credentials
 * (Authorization, every X-TrustPlane-* header) and any inbound copies of the identity headers
 * are removed BEFORE the verified identity is added, so a caller can never spoof them; hop-by-hop
 * headers and those nominated by Connection are dropped in both directions (RFC 9110 §7.6.1).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { AllowDecision } from '@trustplane/core';

export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length']);

export const IDENTITY_HEADERS = {
  subject: 'x-trustplane-subject',
  issuer: 'x-trustplane-issuer',
  trustDomain: 'x-trustplane-trust-domain',
  jti: 'x-trustplane-jti',
} as const;

/** Names listed in Connection (and the legacy Proxy-Connection), lower-cased. */
function connectionNominated(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Set<string> {
  const out = new Set<string>();
  for (const name of ['connection', 'proxy-connection']) {
    const v = headers[name];
    for (const item of Array.isArray(v) ? v : v === undefined ? [] : [v]) {
      for (const token of item.split(',')) {
        const t = token.trim().toLowerCase();
        if (t !== '') out.add(t);
      }
    }
  }
  return out;
}

/** A header value safe to put on the wire: visible ASCII and latin-1 only, else percent-encoded. */
export function safeHeaderValue(value: string): string {
  return /^[\t\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

/**
 * The headers to send upstream for an allowed request: inbound headers minus credentials,
 * TrustPlane headers, hop-by-hop and Connection-nominated ones, plus the verified identity.
 */
export function upstreamRequestHeaders(inbound: IncomingHttpHeaders, decision: AllowDecision, extra: Record<string, string>): Record<string, string | string[]> {
  const nominated = connectionNominated(inbound);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(inbound)) {
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name) || nominated.has(name)) continue;
    if (name === 'authorization' || name.startsWith('x-trustplane-')) continue;
    out[name] = value;
  }
  out[IDENTITY_HEADERS.subject] = safeHeaderValue(decision.subject);
  out[IDENTITY_HEADERS.issuer] = safeHeaderValue(decision.issuer);
  out[IDENTITY_HEADERS.trustDomain] = safeHeaderValue(decision.trustDomain);
  out[IDENTITY_HEADERS.jti] = safeHeaderValue(decision.jti);
  for (const [k, v] of Object.entries(extra)) out[k] = v;
  return out;
}

/** Upstream response headers to pass back to the client: hop-by-hop ones removed. */
export function downstreamResponseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const nominated = connectionNominated(headers);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const n = name.toLowerCase();
    if ((HOP_BY_HOP.has(n) && n !== 'content-length') || nominated.has(n)) continue;
    out[n] = value;
  }
  return out;
}
