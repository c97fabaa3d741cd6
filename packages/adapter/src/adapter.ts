/**
 * The adapter process: the verifying proxy on the main port, and `/healthz`, `/readyz` and
 * `/metrics` on a separate admin port. Graceful shutdown: stop accepting, let in-flight
 * requests finish within a deadline, then close everything.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Verifier } from '@trustplane/core';
import { MALFORMED_RAW, createProxyHandler, type ProxyHandler } from './proxy.js';
import type { AdapterMetrics } from './metrics.js';
import { log, type AuditSink } from './audit-sink.js';
import { closeNow, listenOn, urlOf } from './admin.js';
import { DEFAULT_MAX_CONNECTIONS, capConnections, destroyWithin, endAndDestroy, serverTimeoutOptions } from './connections.js';
import { createVerifying, startVerifyingAdmin, type VerifyingOptions } from './verifying.js';

export interface AdapterOptions extends VerifyingOptions {
  listen: { host: string; port: number };
  upstream: string;
  audit: AuditSink;
  maxBodyBytes?: number;
  upstreamHeadersTimeoutMs?: number;
  upstreamBodyTimeoutMs?: number;
  upstreamConnections?: number;
  /** Server timeouts for slow clients (defaults 10 s, 30 s, 5 s). */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  /** Open client connections at most (default DEFAULT_MAX_CONNECTIONS); more are closed at once. */
  maxConnections?: number;
}

export interface RunningAdapter {
  readonly url: string;
  readonly adminUrl: string | undefined;
  readonly metrics: AdapterMetrics;
  readonly verifier: Verifier;
  readonly server: Server;
  /** Stop accepting, wait for in-flight requests up to `deadlineMs`, then close everything. */
  close(deadlineMs?: number): Promise<void>;
}

export async function startAdapter(opts: AdapterOptions): Promise<RunningAdapter> {
  const { clock, metrics, verifier } = createVerifying(opts);
  const headersTimeoutMs = opts.headersTimeoutMs ?? 10_000;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  const upstreamHeadersTimeoutMs = opts.upstreamHeadersTimeoutMs ?? 30_000;
  const upstreamBodyTimeoutMs = opts.upstreamBodyTimeoutMs ?? 30_000;
  const handler: ProxyHandler = createProxyHandler({
    verifier,
    upstream: opts.upstream,
    maxBodyBytes: opts.maxBodyBytes ?? 1024 * 1024,
    upstreamHeadersTimeoutMs,
    upstreamBodyTimeoutMs,
    upstreamConnections: opts.upstreamConnections ?? 128,
    metrics,
    audit: opts.audit,
    clock,
  });
  // requireHostHeader off: the handler denies a request without a Host `malformed_request` (JSON,
  // audited) where node:http would answer a bare 400 of its own.
  const server = createServer({ ...serverTimeoutOptions({ headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 5_000 }), requireHostHeader: false }, handler);
  // A client that stops reading its response (or sends nothing while its answer is awaited) is
  // dropped once its socket has been idle longer than the upstream may legitimately take.
  server.timeout = Math.max(requestTimeoutMs, upstreamHeadersTimeoutMs, upstreamBodyTimeoutMs) + 5_000;
  capConnections(server, opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 'adapter');
  server.on('checkContinue', handler.checkContinue);
  // CONNECT (a tunnel) is not something a verifying proxy does: a denial, not a dropped socket.
  // The handler writes it and half-closes; the socket is destroyed within a bound either way.
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    handler.refuseConnect(req, socket);
    destroyWithin(socket);
  });
  server.on('clientError', (_err, socket) => {
    // A header or request timeout, or a request node:http cannot parse: answer 400 and destroy
    // the connection (after a bounded attempt to write it), never leave it half-closed.
    // A response still in progress on this connection (a keep-alive client sent a malformed
    // request while the previous answer streams) must not get bytes spliced into it: close.
    const inProgress = (socket as { _httpMessage?: unknown })._httpMessage;
    if (socket.writable && (inProgress === undefined || inProgress === null)) endAndDestroy(socket, MALFORMED_RAW);
    else socket.destroy();
  });
  const addr = await listenOn(server, opts.listen.host, opts.listen.port);

  // The admin port failing (e.g. in use) must not leave the proxy port serving.
  const admin = await startVerifyingAdmin(opts, metrics).catch(async (err: unknown) => {
    await closeNow(server);
    await handler.close();
    throw err;
  });
  const adminServer = admin?.server;
  const adminUrl = admin?.url;

  let closing: Promise<void> | undefined;
  async function close(deadlineMs = 10_000): Promise<void> {
    closing ??= (async () => {
      const stopped = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const deadline = new Promise<'deadline'>((r) => setTimeout(() => r('deadline'), deadlineMs).unref());
      const first = await Promise.race([stopped.then(() => 'done' as const), deadline]);
      if (first === 'deadline') {
        log('warn', 'shutdown deadline reached; closing remaining connections', { in_flight: handler.inFlight() });
        server.closeAllConnections();
        await stopped;
      }
      await new Promise<void>((r) => (adminServer === undefined ? r() : adminServer.close(() => r())));
      adminServer?.closeAllConnections();
      await handler.close();
      await opts.replayStore.close?.();
      await opts.audit.close();
    })();
    return closing;
  }

  return { url: urlOf(addr), adminUrl, metrics, verifier, server, close };
}
