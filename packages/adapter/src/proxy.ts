/**
 * The verifying reverse proxy: every request is verified by the core pipeline before anything is
 * sent upstream; a denial answers `{"allowed":false,"reason":"<code>"}` with the mapped status and
 * never contacts the upstream. Allowed requests go upstream over a keep-alive undici Pool with
 * the path and query bytes exactly as verified, credentials stripped and the verified identity
 * added; the response streams back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Pool, errors as undiciErrors } from 'undici';
import { EMPTY_SHA256, REASONS, auditEventForDecision, type Decision, type DenyDecision, type ReasonCode, type Verifier, type Clock } from '@trustplane/core';
import { hasNoBody, readBody } from './body.js';
import { downstreamResponseHeaders, inboundHeaders, requestIdOf, unforwardedHeaders, upstreamRequestHeaders } from './headers.js';
import type { AdapterMetrics } from './metrics.js';
import { verifyHeadsPerTurn, verifyPerTurn } from './turn-batch.js';
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
  /** `expectsContinue`: the client waits for `100 Continue`, sent once the head is verified. */
  (req: IncomingMessage, res: ServerResponse, expectsContinue?: boolean): void;
  /**
   * For the server's `checkContinue` event (`Expect: 100-continue`): `100 Continue` only for a
   * request that carries a passport and declares a body within the limit; any other is answered
   * by the handler without its body being read.
   */
  checkContinue: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * For the server's `connect` event: a tunnel is not something a verifying proxy does. Denied
   * `malformed_request` (counted and audited like every denial), then the socket is closed.
   */
  refuseConnect: (req: IncomingMessage, socket: Duplex) => void;
  close(): Promise<void>;
  /** Requests currently being handled. */
  inFlight(): number;
}

const DENY_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };

/** A whole `malformed_request` response, for a socket that has no ServerResponse (CONNECT, a parse error). */
export const MALFORMED_RAW = 'HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"allowed":false,"reason":"malformed_request"}';

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
  const { metrics } = opts;
  const verify = verifyPerTurn(opts.verifier);
  const verifyHead = verifyHeadsPerTurn(opts.verifier);
  let active = 0;

  const elapsed = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

  function audit(decision: Decision | { allowed: false; reason: ReasonCode; detail: string }, requestId: string): void {
    opts.audit.write(auditEventForDecision(decision, { component, occurredAtMs: opts.clock.now(), requestId }));
  }

  function record(decision: { allowed: boolean; reason: string; routeId?: string }, verifySeconds: number | undefined): void {
    const outcome = decision.allowed ? 'allow' : 'deny';
    metrics.decisions.inc({ outcome, reason: decision.reason, route: decision.routeId ?? '' });
    if (verifySeconds !== undefined) metrics.verifySeconds.observe({ outcome }, verifySeconds);
  }

  function early(res: ServerResponse, started: bigint, requestId: string, reason: ReasonCode, detail: string, close = false): void {
    const d = { allowed: false as const, reason, detail };
    record(d, undefined);
    audit(d, requestId);
    sendDenial(res, reason, close);
    metrics.requestSeconds.observe({ outcome: 'deny' }, elapsed(started));
  }

  /**
   * Forward an allowed request with undici's dispatch API: the response head and body go
   * straight to `res` (backpressure: undici pauses the upstream socket while `res` is full). A
   * client that goes away aborts the upstream request.
   */
  function forward(req: IncomingMessage, res: ServerResponse, headers: string[], body: Buffer | null, requestId: string, started: bigint, state: Conn): void {
    let resume: (() => void) | undefined;
    const onDrain = () => resume?.();
    pool.dispatch(
      { origin: upstream.origin, method: req.method!, path: prefix + req.url!, headers, body },
      {
        onConnect(abort: (err?: Error) => void) {
          if (state.gone) abort();
          else state.abortUpstream = abort;
        },
        onHeaders(statusCode: number, raw: Buffer[], resumeUpstream: () => void): boolean {
          if (statusCode < 200) return true; // 1xx informational: not forwarded
          resume = resumeUpstream;
          res.writeHead(statusCode, downstreamResponseHeaders(raw));
          return true;
        },
        onData(chunk: Buffer): boolean {
          if (res.write(chunk)) return true;
          res.once('drain', onDrain);
          return false;
        },
        onComplete() {
          state.abortUpstream = undefined;
          res.end();
          metrics.requestSeconds.observe({ outcome: 'allow' }, elapsed(started));
        },
        onError(err: Error) {
          state.abortUpstream = undefined;
          if (state.gone) return; // the client went away: we aborted
          const timeout = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
          metrics.upstreamErrors.inc({ kind: timeout ? 'timeout' : 'unavailable' });
          log('warn', 'upstream request failed', { request_id: requestId, error: err.message });
          if (res.headersSent) res.destroy();
          else sendDenial(res, timeout ? 'upstream_timeout' : 'upstream_unavailable');
        },
      },
    );
  }

  function deny(res: ServerResponse, started: bigint, requestId: string, decision: DenyDecision, verifySeconds: number, close = false): void {
    record(decision, verifySeconds);
    audit(decision, requestId);
    if (decision.reason === 'replay_store_unavailable') metrics.replayStoreErrors.inc();
    sendDenial(res, decision.reason, close);
    metrics.requestSeconds.observe({ outcome: 'deny' }, elapsed(started));
  }

  async function handle(req: IncomingMessage, res: ServerResponse, state: Conn, expectsContinue: boolean): Promise<void> {
    const started = process.hrtime.bigint();
    const raw = req.rawHeaders;
    const h = inboundHeaders(raw);
    const requestId = requestIdOf(h);
    const target = splitTarget(req.url ?? '');
    if (target === undefined) return early(res, started, requestId, 'malformed_request', 'request target is not in origin-form');
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host (the server leaves this to us, so
    // that the answer is a denial with its reason code, counted and audited like any other).
    const host = h['host'];
    const hostProblem = Array.isArray(host) ? 'more than one Host header' : host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 ? 'no Host header' : undefined;
    if (hostProblem !== undefined) return early(res, started, requestId, 'malformed_request', hostProblem, true);
    // Junk without a passport is refused before its body is read.
    if (h['authorization'] === undefined) return early(res, started, requestId, 'missing_passport', 'no Authorization header', true);

    // Only chunked framing is decoded; another transfer coding (`gzip, chunked`) would leave
    // coded bytes to be hashed and forwarded as if they were the content.
    const te = h['transfer-encoding'];
    if (te !== undefined && (typeof te !== 'string' || te.trim().toLowerCase() !== 'chunked')) {
      return early(res, started, requestId, 'malformed_request', 'a Transfer-Encoding other than chunked is not supported', true);
    }
    const verifyStarted = process.hrtime.bigint();
    const unforwarded = unforwardedHeaders(h);
    const request = { method: req.method ?? '', path: target.path, query: target.query, headers: h, bodySha256: EMPTY_SHA256, requestId, ...(unforwarded !== undefined ? { unforwardedHeaders: unforwarded } : {}) };
    let decision: Decision;
    let body: Buffer | null = null;
    if (hasNoBody(h)) {
      decision = await verify(request);
    } else {
      const declared = h['content-length'];
      if (typeof declared === 'string' && Number(declared) > opts.maxBodyBytes) {
        return early(res, started, requestId, 'body_too_large', `Content-Length ${declared} exceeds the maximum ${opts.maxBodyBytes}`, true);
      }
      // Everything that does not need the body is checked before a byte of it is read or held:
      // a caller without a valid passport and proof for this route cannot make the adapter
      // buffer anything (the body is then left unread, and the connection closed).
      const head = await verifyHead(request);
      if (head.allowed === false) return deny(res, started, requestId, head, elapsed(verifyStarted), true);
      if (expectsContinue) res.writeContinue();
      const read = await readBody(req, opts.maxBodyBytes);
      if (!read.ok) {
        head.take(); // never completed: the jti stays unused
        if (read.reason === 'aborted') {
          res.destroy();
          return;
        }
        return early(res, started, requestId, 'body_too_large', read.detail, true);
      }
      if (read.length > 0) body = read.chunks.length === 1 ? read.chunks[0]! : Buffer.concat(read.chunks, read.length);
      decision = await opts.verifier.completeHead(head, read.sha256);
    }
    const verifySeconds = elapsed(verifyStarted);
    if (!decision.allowed) return deny(res, started, requestId, decision, verifySeconds);
    try {
      // Forwarded first (the request is on the upstream socket when dispatch returns), so the
      // upstream works while this process records the decision. The decision is recorded and
      // audited whatever happens to the forwarding.
      if (!state.gone) forward(req, res, upstreamRequestHeaders(raw, unforwarded, decision, requestId, body === null ? 0 : body.length), body, requestId, started, state);
    } finally {
      record(decision, verifySeconds);
      audit(decision, requestId);
    }
  }

  const handler = ((req: IncomingMessage, res: ServerResponse, expectsContinue = false) => {
    active++;
    const state: Conn = { gone: false, abortUpstream: undefined };
    res.once('close', () => {
      active--;
      if (!res.writableFinished) {
        state.gone = true;
        state.abortUpstream?.();
      }
    });
    handle(req, res, state, expectsContinue).catch((err: unknown) => {
      // Fail closed on anything unexpected; the server keeps serving.
      log('error', 'request handling failed', { error: err instanceof Error ? err.message : String(err) });
      sendDenial(res, 'internal_error', true);
    });
  }) as ProxyHandler;
  handler.checkContinue = (req: IncomingMessage, res: ServerResponse) => {
    // `100 Continue` only once the head has been verified (in handle): any other request is
    // answered without its body being read.
    handler(req, res, true);
  };
  handler.refuseConnect = (req: IncomingMessage, socket: Duplex) => {
    const d = { allowed: false as const, reason: 'malformed_request' as const, detail: 'CONNECT (a tunnel) is not proxied' };
    record(d, undefined);
    audit(d, requestIdOf(inboundHeaders(req.rawHeaders)));
    socket.end(MALFORMED_RAW);
  };
  handler.close = () => pool.close();
  handler.inFlight = () => active;
  return handler;
}

/** Per-request state shared by the handler and the upstream dispatch. */
interface Conn {
  /** The client closed the connection before the response was complete. */
  gone: boolean;
  abortUpstream: (() => void) | undefined;
}
