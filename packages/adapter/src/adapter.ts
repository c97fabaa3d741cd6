/**
 * The adapter process: the verifying proxy on the main port, and `/healthz`, `/readyz` and
 * `/metrics` on a separate admin port. Graceful shutdown: stop accepting, let in-flight
 * requests finish within a deadline, then close everything.
 */
import { createServer, type Server } from 'node:http';
import type { Verifier } from '@trustplane/core';
import { MALFORMED_RAW, createProxyHandler, type ProxyHandler } from './proxy.js';
import type { AdapterMetrics } from './metrics.js';
import { log, type AuditSink } from './audit-sink.js';
import { closeNow, listenOn, urlOf } from './admin.js';
import { createVerifying, startVerifyingAdmin, type VerifyingOptions } from './verifying.js';

export interface AdapterOptions extends VerifyingOptions {
  listen: { host: string; port: number };
  upstream: string;
  audit: AuditSink;
  maxBodyBytes?: number;
  upstreamHeadersTimeoutMs?: number;
  upstreamBodyTimeoutMs?: number;
  upstreamConnections?: number;
  /** Server timeouts for slow clients. */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
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
  const handler: ProxyHandler = createProxyHandler({
    verifier,
    upstream: opts.upstream,
    maxBodyBytes: opts.maxBodyBytes ?? 1024 * 1024,
    upstreamHeadersTimeoutMs: opts.upstreamHeadersTimeoutMs ?? 30_000,
    upstreamBodyTimeoutMs: opts.upstreamBodyTimeoutMs ?? 30_000,
    upstreamConnections: opts.upstreamConnections ?? 128,
    metrics,
    audit: opts.audit,
    clock,
  });
  // requireHostHeader off: the handler denies a request without a Host `malformed_request` (JSON,
  // audited) where node:http would answer a bare 400 of its own.
  const server = createServer({ headersTimeout: opts.headersTimeoutMs ?? 10_000, requestTimeout: opts.requestTimeoutMs ?? 30_000, keepAliveTimeout: opts.keepAliveTimeoutMs ?? 5_000, requireHostHeader: false }, handler);
  server.on('checkContinue', handler.checkContinue);
  // CONNECT (a tunnel) is not something a verifying proxy does: a denial, not a dropped socket.
  server.on('connect', handler.refuseConnect);
  server.on('clientError', (_err, socket) => {
    // A response still in progress on this connection (a keep-alive client sent a malformed
    // request while the previous answer streams) must not get bytes spliced into it: close.
    const inProgress = (socket as { _httpMessage?: unknown })._httpMessage;
    if (socket.writable && (inProgress === undefined || inProgress === null)) {
      socket.end(MALFORMED_RAW);
    } else socket.destroy();
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
