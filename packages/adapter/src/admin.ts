/**
 * The admin endpoints shared by the adapter and the forward-auth verifier, on their own port:
 * `/healthz` (the process is alive), `/readyz` (a valid signed bundle pair is loaded, the replay
 * store answers, and any extra condition holds) and `/metrics` (Prometheus text). GET/HEAD only.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PolicyProvider, ReplayStore } from '@trustplane/core';
import type { AdapterMetrics } from './metrics.js';

export interface AdminServerOptions {
  listen: { host: string; port: number };
  policy: PolicyProvider;
  replayStore: ReplayStore;
  metrics: AdapterMetrics;
  /** Extra readiness condition: a problem description, or undefined when ready. */
  extraReadiness?: (() => string | undefined) | undefined;
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

export function urlOf(a: AddressInfo): string {
  return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}

export async function startAdminServer(opts: AdminServerOptions): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else if (path === '/readyz') {
        const problems: string[] = [];
        if (opts.policy.current() === undefined) problems.push('no valid signed bundle pair is loaded');
        try {
          await opts.replayStore.ping?.();
        } catch (err) {
          problems.push(`replay store unreachable: ${err instanceof Error ? err.message : String(err)}`);
        }
        const extra = opts.extraReadiness?.();
        if (extra !== undefined) problems.push(extra);
        res.writeHead(problems.length === 0 ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(problems.length === 0 ? { status: 'ready' } : { status: 'not_ready', problems }));
      } else if (path === '/metrics') {
        const text = await opts.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': opts.metrics.registry.contentType }).end(text);
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      }
    })().catch(() => res.destroy());
  });
  const url = urlOf(await listenOn(server, opts.listen.host, opts.listen.port));
  return { server, url };
}
