/**
 * The forward-auth verifier: a decision endpoint for gateways that authorize with a sub-request
 * and then proxy the original request themselves.
 *
 * - NGINX `auth_request`: the original method and URI arrive in `X-Original-Method` and
 *   `X-Original-URI` (set by the NGINX config from `$request_method` / `$request_uri`).
 * - Traefik `forwardAuth`: `X-Forwarded-Method` and `X-Forwarded-Uri` (set by Traefik).
 * - Envoy HTTP `ext_authz`: the check request keeps the original method, and its path is the
 *   configured `path_prefix` followed by the original path and query.
 *
 * The gateway does not send the body, so verification runs with `bodyNotAvailable: true`: the
 * caller's `X-TrustPlane-Body-SHA256` is bound into the transcript AS CLAIMED and is not checked
 * against the bytes the upstream receives. Routes whose bodies matter should use the reverse
 * proxy or in-process middleware instead.
 *
 * Allow → 200 with `X-TrustPlane-Subject`, `-Issuer`, `-Trust-Domain`, `-JTI` for the gateway to
 * copy onto the upstream request. Deny → the mapped status, `X-TrustPlane-Reason`, and the
 * JSON `{"allowed":false,"reason":"<code>"}`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { auditEventForDecision, type Decision, type ReasonCode, type Verifier } from '@trustplane/core';
import { verifyPerTurn } from './turn-batch.js';
import { IDENTITY_HEADERS, inboundHeaders, requestIdOf, safeHeaderValue, type InboundHeaders } from './headers.js';
import { sendDenial } from './proxy.js';
import { log, type AuditSink } from './audit-sink.js';
import type { AdapterMetrics } from './metrics.js';
import { closeNow, listenOn, urlOf } from './admin.js';
import { createVerifying, startVerifyingAdmin, type VerifyingOptions } from './verifying.js';

export type ForwardAuthConvention = 'nginx' | 'traefik' | 'envoy';

export interface ForwardAuthOptions extends VerifyingOptions {
  listen: { host: string; port: number };
  audit: AuditSink;
  /**
   * Accept the original method/URI from `X-Original-*` (NGINX) and `X-Forwarded-*` (Traefik)
   * headers. Only enable this when the verifier is reachable by the gateway alone (it is the
   * gateway that sets those headers). When false, only the Envoy convention is accepted.
   */
  trustForwardedHeaders: boolean;
  /**
   * Envoy ext_authz `path_prefix`: check requests whose path starts with it carry the original
   * path after it. Default `/ext_authz`; pass `''` to disable the Envoy convention.
   */
  envoyPathPrefix?: string;
}

export interface RunningForwardAuthVerifier {
  readonly url: string;
  readonly adminUrl: string | undefined;
  readonly metrics: AdapterMetrics;
  readonly server: Server;
  readonly verifier: Verifier;
  close(): Promise<void>;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
}

/**
 * The original request as the gateway describes it, or a reason it cannot be determined.
 *
 * Exactly one convention may describe it. A gateway copies the caller's own headers onto its
 * check request (Traefik without `authRequestHeaders`, NGINX for every header its config does
 * not set), so a caller can add the OTHER convention's headers: were one convention preferred,
 * the verifier would check the request those headers describe while the gateway forwards the
 * one it describes itself. A request described twice is therefore refused, never resolved.
 */
export function originalRequest(
  req: IncomingMessage,
  opts: { trustForwardedHeaders: boolean; envoyPathPrefix: string },
  h: InboundHeaders = inboundHeaders(req.rawHeaders),
): { convention: ForwardAuthConvention; method: string; target: string } | { error: string } {
  const url = req.url ?? '';
  const prefix = opts.envoyPathPrefix;
  const envoy = prefix !== '' && url.startsWith(prefix) && url.slice(prefix.length).startsWith('/');
  const nginx = opts.trustForwardedHeaders && (h['x-original-uri'] !== undefined || h['x-original-method'] !== undefined);
  const traefik = opts.trustForwardedHeaders && (h['x-forwarded-uri'] !== undefined || h['x-forwarded-method'] !== undefined);
  const described = [nginx ? 'X-Original-Method/URI (NGINX)' : '', traefik ? 'X-Forwarded-Method/Uri (Traefik)' : '', envoy ? `the ${prefix} path (Envoy)` : ''].filter((c) => c !== '');
  if (described.length > 1) return { error: `the original request is described more than once (${described.join(', ')}): ambiguous, refused` };
  if (nginx) {
    const method = first(h['x-original-method']);
    const target = first(h['x-original-uri']);
    if (method === undefined || target === undefined) return { error: 'X-Original-Method and X-Original-URI must both be present exactly once' };
    return { convention: 'nginx', method, target };
  }
  if (traefik) {
    const method = first(h['x-forwarded-method']);
    const target = first(h['x-forwarded-uri']);
    if (method === undefined || target === undefined) return { error: 'X-Forwarded-Method and X-Forwarded-Uri must both be present exactly once' };
    return { convention: 'traefik', method, target };
  }
  if (envoy) return { convention: 'envoy', method: req.method ?? '', target: url.slice(prefix.length) };
  return { error: 'the original method and URI were not supplied in any recognised gateway convention' };
}

export async function startForwardAuthVerifier(opts: ForwardAuthOptions): Promise<RunningForwardAuthVerifier> {
  const { clock, metrics, verifier } = createVerifying(opts);
  const verify = verifyPerTurn(verifier);
  const envoyPathPrefix = opts.envoyPathPrefix ?? '/ext_authz';

  function deny(res: ServerResponse, reason: ReasonCode): void {
    res.setHeader('x-trustplane-reason', reason);
    sendDenial(res, reason);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const h = inboundHeaders(req.rawHeaders);
    const requestId = requestIdOf(h);
    // Nothing of a body is expected; drain whatever arrives so the connection stays usable.
    req.resume();
    const original = originalRequest(req, { trustForwardedHeaders: opts.trustForwardedHeaders, envoyPathPrefix }, h);
    const started = process.hrtime.bigint();
    let decision: Decision | { allowed: false; reason: ReasonCode; detail: string };
    if ('error' in original || !original.target.startsWith('/')) {
      decision = { allowed: false, reason: 'malformed_request', detail: 'error' in original ? original.error : 'original URI is not in origin-form' };
    } else {
      const q = original.target.indexOf('?');
      decision = await verify({
        method: original.method,
        path: q < 0 ? original.target : original.target.slice(0, q),
        query: q < 0 ? '' : original.target.slice(q + 1),
        headers: h,
        bodyNotAvailable: true,
        requestId,
      });
    }
    const outcome = decision.allowed ? 'allow' : 'deny';
    metrics.decisions.inc({ outcome, reason: decision.reason, route: ('routeId' in decision ? decision.routeId : undefined) ?? '' });
    metrics.verifySeconds.observe({ outcome }, Number(process.hrtime.bigint() - started) / 1e9);
    if (!decision.allowed && decision.reason === 'replay_store_unavailable') metrics.replayStoreErrors.inc();
    opts.audit.write(auditEventForDecision(decision, { component: 'verifier', occurredAtMs: clock.now(), requestId }));
    if (!decision.allowed) return deny(res, decision.reason);
    res.writeHead(200, {
      'cache-control': 'no-store',
      [IDENTITY_HEADERS.subject]: safeHeaderValue(decision.subject),
      [IDENTITY_HEADERS.issuer]: safeHeaderValue(decision.issuer),
      [IDENTITY_HEADERS.trustDomain]: safeHeaderValue(decision.trustDomain),
      [IDENTITY_HEADERS.jti]: safeHeaderValue(decision.jti),
      'content-length': '0',
    });
    res.end();
  }

  const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log('error', 'forward-auth decision failed', { error: err instanceof Error ? err.message : String(err) });
      deny(res, 'internal_error');
    });
  });
  const url = urlOf(await listenOn(server, opts.listen.host, opts.listen.port));
  // The admin port failing (e.g. in use) must not leave the verifier port serving.
  const admin = await startVerifyingAdmin(opts, metrics).catch(async (err: unknown) => {
    await closeNow(server);
    throw err;
  });
  let closing: Promise<void> | undefined;
  return {
    url,
    adminUrl: admin?.url,
    metrics,
    server,
    verifier,
    close: () =>
      (closing ??= (async () => {
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
        if (admin !== undefined) await new Promise<void>((r) => admin.server.close(() => r()));
        await opts.replayStore.close?.();
        await opts.audit.close();
      })()),
  };
}
