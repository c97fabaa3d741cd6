/**
 * Header hygiene for a verifying reverse proxy. On an allowed request the caller's credentials
 * (Authorization, every X-TrustPlane-* header) and any inbound copies of the identity headers
 * are removed BEFORE the verified identity is added, so a caller can never spoof them; hop-by-hop
 * headers and those nominated by Connection are dropped in both directions (RFC 9110 §7.6.1).
 *
 * Everything works on the raw header lists (`req.rawHeaders`, undici's raw response headers) in
 * one pass each: names keep their case and order, repeated headers stay repeated, and Node never
 * has to build `req.headers` or `req.headersDistinct` objects on the hot path.
 */
import { randomUUID } from 'node:crypto';
import type { AllowDecision } from '@trustplane/core';

export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length']);

/**
 * Request headers never forwarded besides the hop-by-hop ones: `Expect` (the adapter has read
 * the whole body before the decision, so `100-continue` is answered here, and undici refuses to
 * send it).
 */
const NOT_FORWARDED = new Set(['expect']);

export const IDENTITY_HEADERS = {
  subject: 'x-trustplane-subject',
  issuer: 'x-trustplane-issuer',
  trustDomain: 'x-trustplane-trust-domain',
  jti: 'x-trustplane-jti',
} as const;

/** Request headers by lower-case name: the value, or every value in wire order when repeated. */
export type InboundHeaders = Readonly<Record<string, string | string[]>>;

/**
 * The request's headers from `req.rawHeaders`, keyed by lower-case name (a null-prototype object:
 * a header called `__proto__` is just a header). Same values as `req.headersDistinct`, except
 * that a header sent once is a string rather than a one-element array.
 */
export function inboundHeaders(raw: readonly string[]): InboundHeaders {
  const out = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (typeof prev === 'string') out[name] = [prev, value];
    else prev.push(value);
  }
  return out;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** The caller's X-Request-Id when it is one short visible-ASCII value, else a fresh UUID. */
export function requestIdOf(headers: InboundHeaders): string {
  const v = headers['x-request-id'];
  return typeof v === 'string' && REQUEST_ID.test(v) ? v : randomUUID();
}

/** Names listed in Connection (and the legacy Proxy-Connection), lower-cased; undefined if none. */
export function connectionNominated(values: readonly (string | readonly string[] | undefined)[]): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (const v of values) {
    if (v === undefined) continue;
    for (const item of typeof v === 'string' ? [v] : v) {
      for (const token of item.split(',')) {
        const t = token.trim().toLowerCase();
        if (t !== '') (out ??= new Set()).add(t);
      }
    }
  }
  return out;
}

/**
 * A header value safe to put on the wire and unambiguous: as is when it is visible ASCII (tab
 * and space allowed) without `%`, else percent-encoded whole (`encodeURIComponent`), so
 * `service:café` and `service:caf%C3%A9` cannot arrive as the same value.
 */
export function safeHeaderValue(value: string): string {
  return /^[\t\x20-\x24\x26-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

/** The request's Connection-nominated header names (dropped before forwarding), if any. */
export function unforwardedHeaders(headers: InboundHeaders): Set<string> | undefined {
  return headers['connection'] === undefined && headers['proxy-connection'] === undefined ? undefined : connectionNominated([headers['connection'], headers['proxy-connection']]);
}

/**
 * Names that are, or that an API reading `_` as `-` (CGI, WSGI, some frameworks) would take for,
 * the caller's credentials, a TrustPlane header or the request id: never forwarded.
 */
function isReservedName(name: string): boolean {
  const n = name.indexOf('_') === -1 ? name : name.replaceAll('_', '-');
  return n === 'authorization' || n === 'x-request-id' || n.startsWith('x-trustplane-');
}

/**
 * The headers to send upstream for an allowed request, as a flat [name, value, …] list: the
 * inbound headers minus credentials, TrustPlane headers, X-Request-Id (also their spellings
 * with `_`), `Expect`, hop-by-hop and Connection-nominated ones; then the verified identity, the
 * request id and the body length. `nominated`: the request's `unforwardedHeaders`.
 */
export function upstreamRequestHeaders(raw: readonly string[], nominated: ReadonlySet<string> | undefined, decision: AllowDecision, requestId: string, bodyLength: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name) || isReservedName(name) || nominated?.has(name) === true) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  out.push(
    IDENTITY_HEADERS.subject,
    safeHeaderValue(decision.subject),
    IDENTITY_HEADERS.issuer,
    safeHeaderValue(decision.issuer),
    IDENTITY_HEADERS.trustDomain,
    safeHeaderValue(decision.trustDomain),
    IDENTITY_HEADERS.jti,
    safeHeaderValue(decision.jti),
    'x-request-id',
    requestId,
  );
  if (bodyLength > 0) out.push('content-length', String(bodyLength));
  return out;
}

/**
 * Upstream response headers to pass back to the client, as a flat [name, value, …] list: undici's
 * raw header bytes read as latin-1 (so every byte passes unchanged), hop-by-hop ones removed
 * except Content-Length, and any nominated by the response's Connection header.
 */
export function downstreamResponseHeaders(raw: readonly Buffer[]): string[] {
  const names: string[] = [];
  let connection: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    names.push(name);
    if (name === 'connection' || name === 'proxy-connection') (connection ??= []).push(raw[i + 1]!.toString('latin1'));
  }
  const nominated = connection === undefined ? undefined : connectionNominated(connection);
  const out: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if ((HOP_BY_HOP.has(name) && name !== 'content-length') || nominated?.has(name) === true) continue;
    out.push(name, raw[2 * i + 1]!.toString('latin1'));
  }
  return out;
}
