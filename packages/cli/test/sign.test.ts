import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  MemoryReplayStore,
  StaticPolicyProvider,
  Verifier,
  compilePolicy,
  decodePassportUnverified,
  type CompiledPolicy,
  type Decision,
  type VerifyRequest,
} from '@trustplane/core';
import { IDENTITY, identityArgs, isOneErrorLine, run, tempDir, testPublicKey, writeKeyFile } from './helpers.js';

const KID = 'client-key-1';
const FIVE = ['Authorization', 'X-TrustPlane-Transcript-SHA256', 'X-TrustPlane-Proof', 'X-TrustPlane-Nonce', 'X-TrustPlane-Body-SHA256'];

/** Trust material for the test key under KID, and a bundle with a POST and a templated GET route. */
function policy(baseUrl = 'https://orders.example'): CompiledPolicy {
  const source = { source_type: 'software_jwks' as const, issuer: IDENTITY.issuer, trust_domain: IDENTITY.trustDomain, subject_prefix: 'service:' };
  return compilePolicy(
    {
      version: 'trustplane-trust-material-v1',
      issuers: [{ issuer: IDENTITY.issuer, trust_domain: IDENTITY.trustDomain, source_type: 'software_jwks', keys: [{ kid: KID, alg: 'EdDSA', public_key_b64url: testPublicKey }] }],
    },
    {
      version: 'trustplane-bundle-v1',
      apis: [{ api_id: 'orders-api', audience: IDENTITY.audience, base_url: baseUrl }],
      route_groups: [
        {
          route_group_id: 'orders',
          api_id: 'orders-api',
          routes: [
            { route_id: 'orders.create', method: 'POST', path_template: '/v1/orders', freshness_class: 'offline-ok', allowed_sources: [source] },
            { route_id: 'orders.get', method: 'GET', path_template: '/v1/orders/{order_id}', freshness_class: 'offline-ok', allowed_sources: [source] },
          ],
        },
      ],
    },
  );
}

function verifier(baseUrl?: string): Verifier {
  return new Verifier({ policy: new StaticPolicyProvider(policy(baseUrl)), replayStore: new MemoryReplayStore() });
}

/** The request a verifier sees when `headers` are sent to `url`. */
function requestFor(method: string, url: string, headers: Record<string, string>, body?: string): VerifyRequest {
  const u = new URL(url);
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  return { method, path: u.pathname, query: u.search.replace(/^\?/, ''), headers: lower, ...(body !== undefined ? { body: Buffer.from(body) } : {}) };
}

function reasonOf(d: Decision): string {
  return d.allowed ? d.reason : `${d.reason}: ${d.detail}`;
}

async function sign(keyFile: string, extra: string[]): Promise<Record<string, string>> {
  const r = await run('sign', ...identityArgs(keyFile, ['--kid', KID, ...extra]));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  return JSON.parse(r.stdout) as Record<string, string>;
}

test('sign: a POST with a JSON body and a query verifies with core Verifier; every header is printed', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const url = 'https://orders.example/v1/orders?z=1&a=%7E';
  const body = '{"order_id":"ord_123","amount":"42.00"}';
  const headers = await sign(keyFile, ['--route-id', 'orders.create', '--method', 'POST', '--url', url, '--header', 'Content-Type: application/json', '--header', 'X-Request-Id: r-1', '--data', body]);
  assert.deepEqual(Object.keys(headers), ['Content-Type', 'X-Request-Id', ...FIVE, 'X-TrustPlane-Signed-Headers']);
  assert.equal(headers['Content-Type'], 'application/json');
  assert.equal(headers['X-TrustPlane-Signed-Headers'], 'content-type,x-trustplane-nonce');
  assert.match(headers['X-TrustPlane-Nonce']!, /^[0-9a-f]{32}$/);
  assert.match(headers['X-TrustPlane-Proof']!, /^[A-Za-z0-9_-]{86}$/);
  const token = headers['Authorization']!.replace(/^Bearer /, '');
  assert.equal(decodePassportUnverified(token).header.kid, KID);

  const v = verifier();
  const ok = await v.verify(requestFor('POST', url, headers, body));
  assert.equal(reasonOf(ok), 'request_verified');
  assert.equal(ok.allowed && ok.subject, IDENTITY.subject);
});

test('sign: a GET verifies; a different path, query or body is request_binding_mismatch', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const url = 'https://orders.example/v1/orders/ord_1?expand=items';
  const headers = await sign(keyFile, ['--route-id', 'orders.get', '--method', 'get', '--url', url]);
  assert.equal(headers['X-TrustPlane-Signed-Headers'], 'x-trustplane-nonce');
  // Each verification uses a fresh verifier, so the jti is not a replay.
  assert.equal(reasonOf(await verifier().verify(requestFor('GET', url, headers))), 'request_verified');
  const otherPath = await verifier().verify(requestFor('GET', 'https://orders.example/v1/orders/ord_2?expand=items', headers));
  assert.equal(otherPath.reason, 'request_binding_mismatch');
  const otherQuery = await verifier().verify(requestFor('GET', 'https://orders.example/v1/orders/ord_1?expand=all', headers));
  assert.equal(otherQuery.reason, 'request_binding_mismatch');
  const withBody = await verifier().verify(requestFor('GET', url, headers, 'x'));
  assert.equal(withBody.reason, 'request_binding_mismatch');
});

test('sign: --data-file signs the file bytes; --signed-headers adds names; unknown names fail', async (t) => {
  const dir = tempDir(t);
  const keyFile = writeKeyFile(dir);
  const bodyFile = path.join(dir, 'body.bin');
  const bytes = Buffer.from([0, 1, 2, 0xff, 0x0a, 0x0d]);
  writeFileSync(bodyFile, bytes);
  const url = 'https://orders.example/v1/orders';
  const headers = await sign(keyFile, [
    '--route-id',
    'orders.create',
    '--method',
    'POST',
    '--url',
    url,
    '--header',
    'Content-Type: application/octet-stream',
    '--header',
    'X-Tenant: acme',
    '--data-file',
    bodyFile,
    '--signed-headers',
    'X-Tenant',
  ]);
  assert.equal(headers['X-TrustPlane-Signed-Headers'], 'content-type,x-tenant,x-trustplane-nonce');
  const req = requestFor('POST', url, headers);
  const ok = await verifier().verify({ ...req, body: bytes });
  assert.equal(reasonOf(ok), 'request_verified');
  // Changing a signed header breaks the binding.
  const changed = await verifier().verify({ ...req, body: bytes, headers: { ...req.headers, 'x-tenant': 'evil' } });
  assert.equal(changed.reason, 'request_binding_mismatch');

  const missing = await run('sign', ...identityArgs(keyFile, ['--route-id', 'r', '--method', 'GET', '--url', url, '--signed-headers', 'x-absent']));
  assert.equal(missing.code, 1);
  assert.ok(isOneErrorLine(missing.stderr), missing.stderr);
  assert.match(missing.stderr, /missing_signed_header/);
});

test('sign --curl: the five headers, valid shell (bash -n), quotes survive', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const r = await run(
    'sign',
    ...identityArgs(keyFile, ['--kid', KID, '--route-id', 'orders.create', '--method', 'POST', '--url', 'https://orders.example/v1/orders?q=a b', '--header', "X-Note: it's $HOME `x`", '--data', `{"note":"it's \\"quoted\\" $(rm -rf /)"}`, '--curl']),
  );
  assert.equal(r.code, 0, r.stderr);
  const cmd = r.stdout.trim();
  assert.ok(!cmd.includes('\n'));
  assert.match(cmd, /^curl -sS -X POST 'https:\/\/orders\.example\/v1\/orders\?q=a%20b' /);
  for (const h of [...FIVE, 'X-TrustPlane-Signed-Headers']) assert.ok(cmd.includes(` -H '${h}: `), `curl command lacks ${h}`);
  assert.match(cmd, / --data-binary '/);
  execFileSync('bash', ['-n', '-c', cmd]);
  // The shell hands curl exactly the strings: ask bash to echo the words back.
  const words = execFileSync('bash', ['-c', `printf '%s\\0' ${cmd.slice('curl '.length)}`]).toString('utf8').split('\0');
  assert.ok(words.includes("X-Note: it's $HOME `x`"));
  assert.ok(words.includes(`{"note":"it's \\"quoted\\" $(rm -rf /)"}`));

  const json = await run('sign', ...identityArgs(keyFile, ['--route-id', 'orders.get', '--method', 'GET', '--url', 'https://orders.example/v1/orders/1', '--curl', '--json']));
  assert.equal(json.code, 0, json.stderr);
  const out = JSON.parse(json.stdout) as { headers: Record<string, string>; curl: string };
  assert.ok(out.curl.startsWith("curl -sS -X GET 'https://orders.example/v1/orders/1'"));
  assert.ok(out.curl.includes(out.headers['X-TrustPlane-Proof']!));
});

function hasCurl(): boolean {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('sign --curl: the command, run as printed, sends a request core Verifier allows', { skip: !hasCurl() && 'curl is not installed' }, async (t) => {
  const dir = tempDir(t);
  const keyFile = writeKeyFile(dir);
  const received: VerifyRequest[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      received.push({ method: req.method ?? '', path: u.pathname, query: u.search.replace(/^\?/, ''), headers: req.headersDistinct, body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const bodyFile = path.join(dir, "order's.json");
  writeFileSync(bodyFile, '{"order_id":"ord_9"}\n');

  const cases = [
    ['--route-id', 'orders.create', '--method', 'POST', '--url', `${base}/v1/orders?b=2&a=1`, '--header', 'Content-Type: application/json', '--data', "{\"note\":\"it's\"}"],
    ['--route-id', 'orders.create', '--method', 'POST', '--url', `${base}/v1/orders`, '--data-file', bodyFile],
    ['--route-id', 'orders.create', '--method', 'POST', '--url', `${base}/v1/orders`, '--data', '@not-a-file'],
    ['--route-id', 'orders.get', '--method', 'GET', '--url', `${base}/v1/orders/ord_1`, '--header', 'X-Empty:'],
  ];
  for (const extra of cases) {
    const r = await run('sign', ...identityArgs(keyFile, ['--kid', KID, ...extra, '--curl']));
    assert.equal(r.code, 0, r.stderr);
    const status = await new Promise<string>((resolve, reject) => {
      execFile('bash', ['-c', r.stdout], { cwd: dir, encoding: 'utf8' }, (err, stdout) => {
        if (err !== null) reject(new Error(`curl failed: ${err.message}`));
        else resolve(stdout);
      });
    });
    assert.equal(status, 'ok');
    const req = received.pop();
    assert.ok(req !== undefined);
    const d = await verifier(base).verify(req);
    assert.equal(reasonOf(d), 'request_verified', extra.join(' '));
  }
});

test('sign: usage errors exit 2', async (t) => {
  const keyFile = writeKeyFile(tempDir(t));
  const base = identityArgs(keyFile, ['--route-id', 'r', '--method', 'POST', '--url', 'https://orders.example/v1/orders']);
  const cases: [string[], RegExp][] = [
    [['--data', 'x', '--data-file', 'f'], /cannot be used with/],
    [['--header', 'no-colon'], /'Name: value'/],
    [['--header', 'Bad Name: v'], /header name/],
    [['--header', 'Authorization: Bearer x'], /set by trustplane sign/],
    [['--header', 'X-TrustPlane-Nonce: n'], /set by trustplane sign/],
    [['--header', 'X-A: 1', '--header', 'x-a: 2'], /more than once/],
    [['--url', 'not a url'], /not an absolute URL/],
    [['--url', 'ftp://x/y'], /http or https/],
    [['--method', 'GE T'], /not an HTTP method/],
    [['--ttl', '0'], /--ttl/],
    [['--signed-headers', 'a b'], /header names/],
  ];
  for (const [extra, message] of cases) {
    const r = await run('sign', ...base, ...extra);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
    assert.ok(isOneErrorLine(r.stderr), r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, '');
  }
});
