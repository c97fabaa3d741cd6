/**
 * The verifying reverse proxy: every request is verified by the core pipeline before anything is
 * sent upstream; a denial answers `{"allowed":false,"reason":"<code>"}` with the mapped status and
 * never contacts the upstream. Allowed requests go upstream over a keep-alive undici Pool with
 * the path and query bytes exactly as verified, credentials stripped and the verified identity
 * added; the response streams back.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, errors as undiciErrors } from 'undici';
import { REASONS, auditEventForDecision, type Decision, type ReasonCode, type Verifier, type Clock } from '@trustplane/core';
import { readBody } from './body.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';
import type { AdapterMetrics } from './metrics.js';
import { log, type AuditSink } from './audit-sink.js';

export interface ProxyOptions {
  verifier: Verifier;
  /** Upstream origin, optionally with a path prefix: http://127.0.0.1:8080 or http://api/base */
  upstream: string;
  maxBodyBytes: number;
  upstreamHeadersTimeoutMs: number;
  upstreamBodyTimeoutMs: number;
  upstreamConnections: number;
  metrics: AdapterMetrics;
  audit: AuditSink;
  clock: Clock;
  component?: 'adapter' | 'verifier';
}

export interface ProxyHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
  /** Requests currently being handled. */
  inFlight(): number;
}

const DENY_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };

/** Send a denial: fixed JSON body, no request bytes echoed. */
export function sendDenial(res: ServerResponse, reason: ReasonCode, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = REASONS[reason].status;
  const headers: Record<string, string> = { ...DENY_HEADERS };
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="trustplane"';
  if (close) headers['connection'] = 'close';
  res.writeHead(status, headers);
  res.end(`{"allowed":false,"reason":"${reason}"}`);
}

function splitTarget(url: string): { path: string; query: string } | undefined {
  // Origin-form only (RFC 9112 §3.2.1): absolute-form and authority-form are not for us.
  if (!url.startsWith('/')) return undefined;
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

export function createProxyHandler(opts: ProxyOptions): ProxyHandler {
  const upstream = new URL(opts.upstream);
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') throw new TypeError('upstream must be an http:// or https:// URL');
  const prefix = upstream.pathname.replace(/\/+$/, '');
  const pool = new Pool(upstream.origin, {
    connections: opts.upstreamConnections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: opts.upstreamHeadersTimeoutMs,
    bodyTimeout: opts.upstreamBodyTimeoutMs,
  });
  const component = opts.component ?? 'adapter';
  let active = 0;

  function audit(decision: Decision | { allowed: false; reason: ReasonCode; detail: string }, requestId: string): void {
    opts.audit.write(auditEventForDecision(decision, { component, occurredAtMs: opts.clock.now(), requestId }));
  }

  function record(decision: { allowed: boolean; reason: string; routeId?: string }, verifyStarted: bigint | undefined): void {
    const outcome = decision.allowed ? 'allow' : 'deny';
    opts.metrics.decisions.inc({ outcome, reason: decision.reason, route: decision.routeId ?? '' });
    if (verifyStarted !== undefined) opts.metrics.verifySeconds.observe({ outcome }, Number(process.hrtime.bigint() - verifyStarted) / 1e9);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const inboundId = req.headers['x-request-id'];
    const requestId = typeof inboundId === 'string' && /^[\x21-\x7e]{1,128}$/.test(inboundId) ? inboundId : randomUUID();
    const target = splitTarget(req.url ?? '');
    const early = (reason: ReasonCode, detail: string, close = false) => {
      const d = { allowed: false as const, reason, detail };
      record(d, undefined);
      audit(d, requestId);
      sendDenial(res, reason, close);
      opts.metrics.requestSeconds.observe({ outcome: 'deny' }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    if (target === undefined) return early('malformed_request', 'request target is not in origin-form');
    // Junk without a passport is refused before its body is read.
    if (req.headers.authorization === undefined) return early('missing_passport', 'no Authorization header', true);

    const body = await readBody(req, opts.maxBodyBytes);
    if (!body.ok) {
      if (body.reason === 'aborted') {
        res.destroy();
        return;
      }
      return early('body_too_large', body.detail, true);
    }
    const verifyStarted = process.hrtime.bigint();
    const decision = await opts.verifier.verify({ method: req.method ?? '', path: target.path, query: target.query, headers: req.headersDistinct, bodySha256: body.sha256, requestId });
    record(decision, verifyStarted);
    audit(decision, requestId);
    if (!decision.allowed) {
      if (decision.reason === 'replay_store_unavailable') opts.metrics.replayStoreErrors.inc();
      sendDenial(res, decision.reason);
      opts.metrics.requestSeconds.observe({ outcome: 'deny' }, Number(process.hrtime.bigint() - started) / 1e9);
      return;
    }

    const headers = upstreamRequestHeaders(req.headers, decision, { 'x-request-id': requestId });
    if (body.length > 0) headers['content-length'] = String(body.length);
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    try {
      const up = await pool.request({
        method: req.method as 'GET',
        path: prefix + req.url!,
        headers,
        body: body.length === 0 ? null : body.chunks.length === 1 ? body.chunks[0]! : Buffer.concat(body.chunks, body.length),
        signal: abort.signal,
      });
      res.writeHead(up.statusCode, downstreamResponseHeaders(up.headers));
      for await (const chunk of up.body) {
        if (!res.write(chunk as Buffer)) await new Promise((r) => res.once('drain', r));
      }
      res.end();
      opts.metrics.requestSeconds.observe({ outcome: 'allow' }, Number(process.hrtime.bigint() - started) / 1e9);
    } catch (err) {
      if (abort.signal.aborted) return; // the client went away
      const timeout = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      opts.metrics.upstreamErrors.inc({ kind: timeout ? 'timeout' : 'unavailable' });
      log('warn', 'upstream request failed', { request_id: requestId, error: err instanceof Error ? err.message : String(err) });
      if (res.headersSent) res.destroy();
      else sendDenial(res, timeout ? 'upstream_timeout' : 'upstream_unavailable');
    }
  }

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    active++;
    res.once('close', () => active--);
    handle(req, res).catch((err: unknown) => {
      // Fail closed on anything unexpected; the server keeps serving.
      log('error', 'request handling failed', { error: err instanceof Error ? err.message : String(err) });
      sendDenial(res, 'internal_error', true);
    });
  }) as ProxyHandler;
  handler.close = () => pool.close();
  handler.inFlight = () => active;
  return handler;
}
