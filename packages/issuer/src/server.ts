/**
 * The issuer service's HTTP face: `GET /.well-known/jwks.json` (the published keys as RFC 8037
 * OKP Ed25519 JWKs), `GET /.well-known/openid-configuration` (a minimal, honest discovery
 * document: this service publishes keys for TrustPlane passports, it is not an OpenID provider),
 * and `GET /healthz`. A timer runs the keyring's rotation step. No endpoint returns private
 * material, and no response echoes request bytes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IssuerKeyring } from './keyring.js';
import { trustUrlProblem } from '@trustplane/core';

export interface IssuerServerOptions {
  listen: { host: string; port: number };
  /** The `iss` of passports signed with these keys: https, or http on loopback only. */
  issuer: string;
  keyring: IssuerKeyring;
  /** Public base URL of this service for `jwks_uri` (default: `issuer`); same rules as `issuer`. */
  publicUrl?: string;
  /** How often the rotation step runs (default 60 000 ms; 0 disables the timer). */
  maintainEveryMs?: number;
  onLog?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface RunningIssuer {
  /** Where this process listens (http). */
  readonly url: string;
  /** The advertised `jwks_uri`. */
  readonly jwksUri: string;
  readonly server: Server;
  /** Stop the timer, stop accepting, finish in-flight requests (at most 2 s). */
  close(): Promise<void>;
}

/** Why an issuer / public URL is unacceptable, or undefined: https (http on loopback), no credentials, query or fragment. */
export function issuerUrlProblem(value: string): string | undefined {
  return trustUrlProblem(value, { noQuery: true });
}

/**
 * Verifiers may cache the JWKS this long: at most 300 s, and at most half the pre-publication
 * window, so a verifier that honours it sees a pre-published key before that key signs. (A
 * TrustPlane verifier caches a JWKS for at least 60 s whatever max-age says, which is why the
 * CLI refuses a pre-publication window below 120 s; code with a fake clock may use less.)
 */
export function jwksMaxAgeSeconds(keyring: IssuerKeyring): number {
  return Math.max(0, Math.min(300, Math.floor(keyring.prepublishSeconds / 2)));
}

export async function startIssuer(opts: IssuerServerOptions): Promise<RunningIssuer> {
  for (const [name, v] of [['issuer', opts.issuer], ['publicUrl', opts.publicUrl]] as const) {
    const problem = v === undefined ? undefined : issuerUrlProblem(v);
    if (problem !== undefined) throw new TypeError(`${name} ${JSON.stringify(v)} ${problem}`);
  }
  const base = new URL(opts.publicUrl ?? opts.issuer);
  const prefix = base.pathname.replace(/\/+$/, '');
  const jwksUri = `${base.origin}${prefix}/.well-known/jwks.json`;
  const discovery = JSON.stringify({
    issuer: opts.issuer,
    jwks_uri: jwksUri,
    // What this service is: a key publisher for EdDSA-signed passports. No OpenID endpoints.
    id_token_signing_alg_values_supported: ['EdDSA'],
    response_types_supported: [],
    subject_types_supported: ['public'],
  });
  const log = opts.onLog ?? (() => undefined);
  const maxAge = jwksMaxAgeSeconds(opts.keyring);
  // Served at the root and under the public URL's path (a proxy may or may not strip it).
  const route = (p: string): string => (prefix !== '' && p.startsWith(`${prefix}/`) ? p.slice(prefix.length) : p);

  const server = createServer((req, res) => {
    const send = (status: number, body: string, headers: Record<string, string | number> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-content-type-options': 'nosniff', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    try {
      const p = route((req.url ?? '/').split('?')[0] ?? '/');
      const known = p === '/.well-known/jwks.json' || p === '/.well-known/openid-configuration' || p === '/healthz';
      if (!known) return send(404, '{"error":"not_found"}', { 'cache-control': 'no-store' });
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, '{"error":"method_not_allowed"}', { allow: 'GET, HEAD', 'cache-control': 'no-store' });
      const cache = { 'cache-control': `public, max-age=${maxAge}` };
      if (p === '/.well-known/jwks.json') return send(200, JSON.stringify(opts.keyring.jwks()), cache);
      if (p === '/.well-known/openid-configuration') return send(200, discovery, cache);
      return send(200, JSON.stringify({ status: 'ok', signing_kid: opts.keyring.signingKey().kid }), { 'cache-control': 'no-store' });
    } catch (err) {
      log('error', 'issuer request failed', { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) send(500, '{"error":"internal_error"}', { 'cache-control': 'no-store' });
      else res.destroy();
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  const addr = await new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
  const every = opts.maintainEveryMs ?? 60_000;
  let keptBefore = '';
  const step = () => {
    try {
      // Never wait for the lock here: a synchronous wait would stall every request (and SIGTERM)
      // while `trustplane issuer rotate` holds it. A busy round is skipped; the next tick retries.
      const r = opts.keyring.maintain({ wait: false });
      if (r.busy === true) {
        log('info', 'issuer key maintenance skipped: another process holds the key directory lock; retrying at the next step', { dir: opts.keyring.dir });
        return;
      }
      if (r.rotated !== undefined) log('info', 'issuer key created', { kid: r.rotated, signing_kid: opts.keyring.signingKey().kid });
      for (const kid of r.removed) log('info', 'issuer key expired: unpublished and deleted', { kid });
      // Reported when the set changes, not every step.
      if (r.kept.join() !== keptBefore && r.kept.length > 0) {
        log('warn', 'issuer key directory holds key files no timeline entry names; kept, as they may have been published (remove them by hand if not needed)', { dir: opts.keyring.dir, files: r.kept });
      }
      keptBefore = r.kept.join();
    } catch (err) {
      log('error', 'issuer key maintenance failed', { error: err instanceof Error ? err.message : String(err) });
    }
  };
  step();
  const timer = every > 0 ? setInterval(step, every) : undefined;
  timer?.unref();
  let closing: Promise<void> | undefined;
  return {
    url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`,
    jwksUri,
    server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        if (timer !== undefined) clearInterval(timer);
        const force = setTimeout(() => server.closeAllConnections(), 2000);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      })),
  };
}
