/**
 * A real NGINX (Debian nginx-light, with ngx_http_auth_request_module) in front of the
 * forward-auth verifier and an echo upstream, all on loopback. The generated config is the one
 * documented in docs/gateways.md and shipped as deploy/nginx/trustplane.conf.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { MemoryReplayStore, StaticPolicyProvider, compilePolicy, type VerifyRequest } from '@trustplane/core';
import { makeRequest, policyBundle, trustMaterial, startEchoUpstream, freePort } from '@trustplane/testkit';
import { startForwardAuthVerifier, MemoryAuditSink } from '../src/index.js';

const NGINX = process.env['NGINX_BIN'] ?? '/usr/sbin/nginx';

/** Whether nginx with auth_request exists here. In CI it must (fail loudly instead of skipping). */
function nginxAvailable(): boolean {
  const v = existsSync(NGINX) ? spawnSync(NGINX, ['-V'], { encoding: 'utf8' }) : undefined;
  const ok = v !== undefined && v.status === 0 && `${v.stdout}${v.stderr}`.includes('http_auth_request_module');
  if (!ok && process.env['CI'] === 'true') throw new Error(`nginx with http_auth_request_module is required in CI at ${NGINX} (.ci/run installs nginx-light)`);
  if (!ok) console.warn('\n*** WARNING: nginx (with auth_request) is not installed: the NGINX forward-auth integration test is SKIPPED locally (it runs in CI). apt-get install nginx-light ***\n');
  return ok;
}

/** The documented server block, with the loopback addresses filled in. */
export function trustplaneServerBlock(o: { listen: string; verifier: string; upstream: string }): string {
  return `
  server {
    listen ${o.listen};

    location / {
      auth_request /_trustplane_auth;
      auth_request_set $tp_subject      $upstream_http_x_trustplane_subject;
      auth_request_set $tp_issuer       $upstream_http_x_trustplane_issuer;
      auth_request_set $tp_trust_domain $upstream_http_x_trustplane_trust_domain;
      auth_request_set $tp_jti          $upstream_http_x_trustplane_jti;
      auth_request_set $tp_reason       $upstream_http_x_trustplane_reason;
      error_page 401 = @trustplane_401;
      error_page 403 = @trustplane_403;

      # Credentials never reach the upstream; identity headers are the verified ones only.
      proxy_set_header Authorization "";
      proxy_set_header X-TrustPlane-Proof "";
      proxy_set_header X-TrustPlane-Transcript-SHA256 "";
      proxy_set_header X-TrustPlane-Nonce "";
      proxy_set_header X-TrustPlane-Body-SHA256 "";
      proxy_set_header X-TrustPlane-Signed-Headers "";
      proxy_set_header X-TrustPlane-Subject      $tp_subject;
      proxy_set_header X-TrustPlane-Issuer       $tp_issuer;
      proxy_set_header X-TrustPlane-Trust-Domain $tp_trust_domain;
      proxy_set_header X-TrustPlane-JTI          $tp_jti;
      proxy_pass ${o.upstream};
    }

    location = /_trustplane_auth {
      internal;
      proxy_pass ${o.verifier}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
    }

    location @trustplane_401 {
      default_type application/json;
      add_header Cache-Control no-store always;
      return 401 '{"allowed":false,"reason":"$tp_reason"}';
    }
    location @trustplane_403 {
      default_type application/json;
      add_header Cache-Control no-store always;
      return 403 '{"allowed":false,"reason":"$tp_reason"}';
    }
  }`;
}

function waitForPort(port: number, child: ChildProcess, errorLog: string): Promise<void> {
  const deadline = Date.now() + 5000;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve();
      });
      c.once('error', () => {
        if (Date.now() > deadline || child.exitCode !== null) {
          reject(new Error(`nginx did not start: ${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : '(no error log)'}`));
        } else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

async function send(base: string, r: VerifyRequest, pathOverride?: string) {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string') headers[k] = v;
  const res = await request(`${base}${pathOverride ?? r.path}${r.query ? `?${r.query}` : ''}`, { method: r.method as 'GET', headers });
  const text = await res.body.text();
  return { status: res.statusCode, text };
}

test('NGINX auth_request → forward-auth verifier: allow with identity upstream, tampered path and replay → 403 never upstream', { skip: !nginxAvailable() }, async () => {
  const upstream = await startEchoUpstream();
  const verifier = await startForwardAuthVerifier({
    listen: { host: '127.0.0.1', port: 0 },
    policy: new StaticPolicyProvider(compilePolicy(trustMaterial(), policyBundle())),
    replayStore: new MemoryReplayStore(),
    audit: new MemoryAuditSink(),
    trustForwardedHeaders: true,
  });
  const dir = mkdtempSync(join(tmpdir(), 'tp-nginx-'));
  const port = await freePort();
  const errorLog = join(dir, 'error.log');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}daemon off;
master_process on;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${errorLog} info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
${trustplaneServerBlock({ listen: `127.0.0.1:${port}`, verifier: verifier.url, upstream: upstream.url })}
}
`,
  );
  const child = spawn(NGINX, ['-e', errorLog, '-p', dir, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((r) => child.once('exit', r));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitForPort(port, child, errorLog).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${stderr}`);
    });

    // 1. A signed request reaches the upstream with the verified identity and no credentials.
    const signed = makeRequest({ nowMs: Date.now(), query: 'status=open' });
    const ok = await send(base, signed);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(upstream.requests.length, 1);
    const seen = upstream.requests[0]!;
    assert.equal(seen.url, '/v1/orders/search?status=open');
    assert.equal(seen.headers['x-trustplane-subject'], 'service:orders-client');
    assert.equal(seen.headers['x-trustplane-issuer'], 'https://issuer.example/software-jwks');
    assert.equal(seen.headers['x-trustplane-trust-domain'], 'example.local');
    assert.match(String(seen.headers['x-trustplane-jti']), /.+/);
    assert.equal(seen.headers['authorization'], undefined);
    assert.equal(seen.headers['x-trustplane-proof'], undefined);

    // 2. Tampered path: 403, never upstream.
    const t = makeRequest({ nowMs: Date.now(), path: '/v1/orders/ord_1' });
    const tampered = await send(base, t, '/v1/orders/ord_2');
    assert.equal(tampered.status, 403, tampered.text);
    assert.deepEqual(JSON.parse(tampered.text), { allowed: false, reason: 'request_binding_mismatch' });

    // 3. Replay of the allowed request: 403, never upstream.
    const replay = await send(base, signed);
    assert.equal(replay.status, 403, replay.text);
    assert.deepEqual(JSON.parse(replay.text), { allowed: false, reason: 'jti_replay' });

    // 4. Spoofed identity headers without a passport: 401, never upstream.
    const spoof = await request(`${base}/v1/orders/search`, { headers: { 'x-trustplane-subject': 'service:admin' } });
    assert.equal(spoof.statusCode, 401);
    assert.deepEqual(await spoof.body.json(), { allowed: false, reason: 'missing_passport' });

    assert.equal(upstream.requests.length, 1, 'only the allowed request reached the upstream');
  } finally {
    if (child.exitCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      await exited;
    }
    await verifier.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
