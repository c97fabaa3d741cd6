/**
 * The admin endpoints of the adapter, the forward-auth verifier and the worker primary, on their
 * own port: `/healthz` (the process is alive), `/readyz` (200 when there are no readiness
 * problems, else 503 listing them) and `/metrics` (Prometheus text). GET/HEAD only. What "ready"
 * means and where metrics come from is the caller's: `verifierReadiness` is the single-process
 * answer (a bundle pair loaded, the replay store answering, any extra condition).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PolicyProvider, ReplayStore } from '@trustplane/core';
import { capConnections, serverTimeoutOptions } from './connections.js';

/** Open connections the admin port accepts (probes and scrapers need few). */
export const ADMIN_MAX_CONNECTIONS = 128;

export interface AdminServerOptions {
  listen: { host: string; port: number };
  /** Readiness problems; none means ready. */
  readiness: () => Promise<string[]>;
  metrics: () => Promise<{ contentType: string; text: string }>;
  /** Extra members of the `{"status":"ready"}` body. */
  readyDetails?: () => Record<string, unknown>;
}

export function listenOn(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Stop a server and drop its connections now (a startup that failed after it listened). */
export function closeNow(server: Server): Promise<void> {
  return new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
}

export function urlOf(a: AddressInfo): string {
  return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}

/** Readiness of one verifying process. */
export function verifierReadiness(policy: PolicyProvider, replayStore: ReplayStore, extra?: () => string | undefined): () => Promise<string[]> {
  return async () => {
    const problems: string[] = [];
    if (policy.current() === undefined) problems.push('no valid signed bundle pair is loaded');
    try {
      await replayStore.ping?.();
    } catch (err) {
      problems.push(`replay store unreachable: ${err instanceof Error ? err.message : String(err)}`);
    }
    const more = extra?.();
    if (more !== undefined) problems.push(more);
    return problems;
  };
}

export async function startAdminServer(opts: AdminServerOptions): Promise<{ server: Server; url: string }> {
  const server = createServer(serverTimeoutOptions({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000 }), (req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else if (path === '/readyz') {
        const problems = await opts.readiness();
        const body = problems.length === 0 ? { status: 'ready', ...opts.readyDetails?.() } : { status: 'not_ready', problems };
        res.writeHead(problems.length === 0 ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      } else if (path === '/metrics') {
        const m = await opts.metrics();
        res.writeHead(200, { 'content-type': m.contentType }).end(m.text);
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      }
    })().catch(() => res.destroy());
  });
  capConnections(server, ADMIN_MAX_CONNECTIONS, 'admin');
  const url = urlOf(await listenOn(server, opts.listen.host, opts.listen.port));
  return { server, url };
}
