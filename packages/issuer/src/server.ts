/**
 * The issuer service's HTTP face: `GET /.well-known/jwks.json` (the published keys as RFC 8037
 * OKP Ed25519 JWKs), `GET /.well-known/openid-configuration` (a minimal, honest discovery
 * document: issuer and jwks_uri; this service issues TrustPlane passports, not OpenID tokens), and
 * `/healthz`. A timer runs the keyring's rotation step. No endpoint ever returns private material.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IssuerKeyring } from './keyring.js';

export interface IssuerServerOptions {
  listen: { host: string; port: number };
  /** The `iss` of passports signed with these keys; also the discovery document's issuer. */
  issuer: string;
  keyring: IssuerKeyring;
  /** Public base URL of this service for `jwks_uri` (default: derived from `issuer`). */
  publicUrl?: string;
  /** How often the rotation step runs (default 60 s; 0 disables the timer). */
  maintainEveryMs?: number;
  onLog?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface RunningIssuer {
  readonly url: string;
  readonly jwksUri: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** Verifiers re-read the JWKS at most this long after a change; kept below any prepublish window. */
export function jwksMaxAgeSeconds(keyring: IssuerKeyring): number {
  return Math.max(0, Math.min(300, Math.floor(keyring.prepublishSeconds / 2)));
}

export async function startIssuer(opts: IssuerServerOptions): Promise<RunningIssuer> {
  let issuerUrl: URL;
  try {
    issuerUrl = new URL(opts.publicUrl ?? opts.issuer);
  } catch {
    throw new TypeError(`issuer ${JSON.stringify(opts.issuer)} is not a URL; give publicUrl for the jwks_uri`);
  }
  const base = issuerUrl.href.replace(/\/$/, '');
  const jwksUri = `${base}/.well-known/jwks.json`;
  const log = opts.onLog ?? (() => undefined);
  const maxAge = jwksMaxAgeSeconds(opts.keyring);

  const server = createServer((req, res) => {
    const p = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end('{"error":"method_not_allowed"}');
      return;
    }
    const json = (body: unknown, cache: string) => {
      const text = JSON.stringify(body);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': cache, 'content-length': Buffer.byteLength(text) }).end(req.method === 'HEAD' ? undefined : text);
    };
    try {
      if (p === '/.well-known/jwks.json') json(opts.keyring.jwks(), `public, max-age=${maxAge}`);
      else if (p === '/.well-known/openid-configuration') {
        json({ issuer: opts.issuer, jwks_uri: jwksUri, id_token_signing_alg_values_supported: ['EdDSA'], response_types_supported: [], subject_types_supported: ['public'], token_endpoint_auth_methods_supported: [] }, `public, max-age=${maxAge}`);
      } else if (p === '/healthz') json({ status: 'ok', signing_kid: opts.keyring.signingKey().kid }, 'no-store');
      else res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    } catch (err) {
      log('error', 'issuer request failed', { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal_error"}');
    }
  });
  const addr = await new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
  const every = opts.maintainEveryMs ?? 60_000;
  const step = () => {
    try {
      const r = opts.keyring.maintain();
      if (r.rotated !== undefined) log('info', 'issuer key rotation: next key published', { kid: r.rotated });
      for (const kid of r.removed) log('info', 'issuer key expired and unpublished', { kid });
    } catch (err) {
      log('error', 'issuer key maintenance failed', { error: err instanceof Error ? err.message : String(err) });
    }
  };
  step();
  const timer = every > 0 ? setInterval(step, every) : undefined;
  timer?.unref();
  return {
    url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`,
    jwksUri,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        if (timer !== undefined) clearInterval(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
