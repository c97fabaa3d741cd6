/**
 * `trustplane demo`: the Acme Orders story on loopback and temporary files only. Starts a sample
 * Orders API, the real adapter on signed bundles, then plays the caller shapes (accepted), the
 * attacks (each denied with its reason code), and adds and revokes a client with the real
 * `trustplane bundle` commands while the adapter runs. Exit 0 only if every step behaved.
 */
import { createServer, type Server } from 'node:http';
import { createServer as netServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  BundleWatcher,
  MemoryReplayStore,
  createSignedFetch,
  encodeBase64url,
  formatPrivateKey,
  generatePrivateKey,
  issuePassport,
  parsePublicKey,
  signRequest,
  type Ed25519PrivateKey,
} from '@trustplane/core';
import type { startAdapter as StartAdapter } from '@trustplane/adapter';
import type { BrokerServer, DevWorkloadApi } from '@trustplane/broker';
import type { CliIo } from '../output.js';

type Main = (argv: readonly string[], io?: CliIo) => Promise<number>;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

interface Caller {
  name: string;
  key: Ed25519PrivateKey;
  kid: string;
  issuer: string;
  subject: string;
  trustDomain: string;
}

export function registerDemo(program: Command, io: CliIo, main: Main): void {
  program
    .command('demo')
    .description('Run the Acme Orders demo locally: adapter, signed bundles, callers and attacks (loopback and temp files only)')
    .option('--keep', 'keep the temporary directory (bundles, keys, audit log) for inspection')
    .action(async (opts: { keep?: boolean }) => {
      const { startAdapter, createAuditSink } = await import('@trustplane/adapter');
      const { Broker, WorkloadApiX509Source, brokerIssue, spiffeSource, startBrokerServer, startDevWorkloadApiFor } = await import('@trustplane/broker');
      const color = process.stdout.isTTY && process.env['NO_COLOR'] === undefined;
      const c = (code: string, s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
      const say = (s = '') => io.stdout(`${s}\n`);
      let failures = 0;
      const check = (label: string, ok: boolean, got: string) => {
        if (!ok) failures++;
        say(`  ${ok ? c('32', '✔') : c('31', '✘')} ${label} ${c('2', `→ ${got}`)}`);
      };
      const quiet: CliIo = { stdout: () => undefined, stderr: (t) => io.stderr(t) };
      const run = async (args: string[]) => {
        say(c('36', `    $ trustplane ${args.map((a) => (/[^\w@%+=:,./-]/.test(a) ? `'${a}'` : a)).join(' ')}`));
        const code = await main(['node', 'trustplane', ...args], quiet);
        if (code !== 0) throw new Error(`trustplane ${args[0]} ${args[1] ?? ''} failed (exit ${code})`);
      };

      const dir = mkdtempSync(join(tmpdir(), 'trustplane-demo-'));
      const f = (n: string) => join(dir, n);
      // Ctrl-C mid-demo: the directory (it holds a private key) goes too, then the usual exit.
      const onSignal = (signal: NodeJS.Signals) => {
        if (opts.keep !== true) rmSync(dir, { recursive: true, force: true });
        process.exit(signal === 'SIGINT' ? 130 : 143);
      };
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      let upstream: Server | undefined;
      let adapter: Awaited<ReturnType<typeof StartAdapter>> | undefined;
      let watcher: BundleWatcher | undefined;
      let agent: DevWorkloadApi | undefined;
      let svids: InstanceType<typeof WorkloadApiX509Source> | undefined;
      let brokerServer: BrokerServer | undefined;
      try {
        say(c('1', 'TrustPlane Auth demo — Acme protects its Orders API without any shared API key'));
        say(c('2', `  working directory: ${dir}`));
        // 1. The sample Orders upstream: it owns business logic and sees only verified identity.
        upstream = createServer((req, res) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ orders: [{ id: 'ord_1', amount: '42.00' }], caller: req.headers['x-trustplane-subject'] ?? null }));
        });
        await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', r));
        const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
        const port = await freePort();
        const base = `http://127.0.0.1:${port}`;

        // 2. Keys: a bundle-signing key (the reviewer's) and one key per caller.
        const signer = generatePrivateKey();
        writeFileSync(f('bundle-signing.key'), `${formatPrivateKey(signer)}\n`, { mode: 0o600 });
        const mk = (name: string, issuer: string, subject: string, trustDomain = 'acme.example'): Caller => ({ name, key: generatePrivateKey(), kid: `${name}-key-1`, issuer, subject, trustDomain });
        const local = mk('local-script', 'https://issuer.acme.example/local-jwks', 'script:alice-laptop');
        const ec2 = mk('ec2-billing', 'https://issuer.acme.example/ec2-jwks', 'ec2:i-0abc123:billing');
        const n8n = mk('n8n-runner', 'https://issuer.acme.example/automation-jwks', 'system:serviceaccount:n8n:n8n-runner', 'acme.example.automation');
        const callers = [local, ec2, n8n];
        // The same-cluster SPIFFE workload holds no key: a broker beside it does, and issues
        // attested_workload passports only after verifying the workload's X.509-SVID.
        const brokerKey = generatePrivateKey();
        const BROKER = { issuer: 'https://broker.orders.acme.example', kid: 'orders-broker-key-1', trustDomain: 'acme.example' };
        const WORKLOAD = 'spiffe://acme.example/ns/orders/sa/fulfillment-worker';
        const spiffeRule = {
          source_type: 'spiffe_spire',
          issuer: BROKER.issuer,
          trust_domain: BROKER.trustDomain,
          subject_prefix: 'spiffe://acme.example/ns/orders/',
          required_key_binding: 'attested_workload',
          provenance_policy: { profile: 'trustplane-spiffe-spire-k8s-v1', required_spiffe_trust_domain: 'acme.example', required_posture: 'spiffe_svid_verified' },
        };
        const src = (cl: Caller, selector: Record<string, string>) => ({ source_type: 'software_jwks', issuer: cl.issuer, trust_domain: cl.trustDomain, ...selector, required_key_binding: 'software' });
        const trust = {
          version: 'trustplane-trust-material-v1',
          issuers: [
            ...callers.map((cl) => ({ issuer: cl.issuer, trust_domain: cl.trustDomain, source_type: 'software_jwks', keys: [{ kid: cl.kid, alg: 'EdDSA', public_key_b64url: encodeBase64url(cl.key.publicKey), status: 'active' }] })),
            { issuer: BROKER.issuer, trust_domain: BROKER.trustDomain, source_type: 'spiffe_spire', keys: [{ kid: BROKER.kid, alg: 'EdDSA', public_key_b64url: encodeBase64url(brokerKey.publicKey), status: 'active' }] },
          ],
          revocations: [],
        };
        const bundle = {
          version: 'trustplane-bundle-v1',
          kind: 'policy_runtime_bundle',
          policy_id: 'acme-orders',
          policy_version: 1,
          trust_domain: 'acme.example',
          apis: [{ api_id: 'orders-api', audience: 'orders-api', base_url: base }],
          route_groups: [
            {
              route_group_id: 'orders',
              api_id: 'orders-api',
              routes: [
                { route_id: 'orders.list', method: 'GET', path_template: '/orders', risk: 'low', required_key_binding: 'software', freshness_class: 'bounded', max_staleness_seconds: 300, allowed_sources: [src(local, { subject_exact: local.subject }), src(ec2, { subject_prefix: 'ec2:i-' }), spiffeRule, src(n8n, { subject_exact: n8n.subject })] },
                { route_id: 'orders.get', method: 'GET', path_template: '/orders/{order_id}', risk: 'low', required_key_binding: 'software', freshness_class: 'bounded', max_staleness_seconds: 300, allowed_sources: [src(local, { subject_exact: local.subject })] },
                { route_id: 'orders.refund', method: 'POST', path_template: '/orders/{order_id}/refund', risk: 'high', required_key_binding: 'attested_workload', freshness_class: 'realtime', allowed_sources: [src(ec2, { subject_prefix: 'ec2:i-' }), spiffeRule] },
              ],
            },
          ],
          default_required_key_binding: 'software',
          default_freshness_class: 'bounded',
          default_max_staleness_seconds: 300,
          revocations: [],
          revocation_feed: { freshness_class: 'bounded' },
        };
        writeFileSync(f('trust-material.unsigned.json'), `${JSON.stringify(trust, null, 2)}\n`);
        writeFileSync(f('policy-bundle.unsigned.json'), `${JSON.stringify(bundle, null, 2)}\n`);
        say();
        say(c('1', '1. Sign the reviewed trust material and route policy'));
        const sign = async (kind: 'trust-material' | 'policy-bundle', input: string, out: string) =>
          run(['bundle', 'sign', `--${kind}`, input, '--out', out, '--private-key', f('bundle-signing.key'), '--kid', 'acme-bundles-2026', '--signer-issuer', 'https://reviews.acme.example']);
        await sign('trust-material', f('trust-material.unsigned.json'), f('trust-material.json'));
        await sign('policy-bundle', f('policy-bundle.unsigned.json'), f('policy-bundle.json'));

        say(c('1', '2. Start the adapter in front of the Orders API'));
        const keys = new Map([['acme-bundles-2026', parsePublicKey(encodeBase64url(signer.publicKey))]]);
        watcher = new BundleWatcher({ trustMaterialFile: f('trust-material.json'), policyBundleFile: f('policy-bundle.json'), trustMaterialKeys: keys, policyBundleKeys: keys, pollIntervalMs: 100 });
        if (!watcher.start()) throw new Error('the signed bundles did not load');
        const auditSink = createAuditSink(f('audit.jsonl'));
        adapter = await startAdapter({ listen: { host: '127.0.0.1', port }, upstream: upstreamUrl, policy: watcher, replayStore: new MemoryReplayStore(), audit: auditSink });
        say(c('2', `    adapter ${adapter.url} → Orders API ${upstreamUrl}; audit log ${f('audit.jsonl')}`));

        say(c('1', '   Start a broker beside the SPIFFE workload, with a (development) SPIFFE Workload API endpoint'));
        agent = await startDevWorkloadApiFor({ trustDomain: 'acme.example', spiffeId: WORKLOAD, socketPath: f('spire-agent.sock') });
        svids = new WorkloadApiX509Source({ socketPath: agent.socketPath, trustDomain: 'acme.example', selector: { prefix: 'spiffe://acme.example/ns/orders' } });
        const svid = await svids.ready(5000);
        if (!svid.ok) throw new Error(`the broker could not verify the demo SVID: ${svid.code}: ${svid.detail}`);
        brokerServer = await startBrokerServer({
          socketPath: f('broker.sock'),
          broker: new Broker({ policy: { issuer: BROKER.issuer, trustDomain: BROKER.trustDomain, signingKey: brokerKey, kid: BROKER.kid, allow: [{ audience: 'orders-api', routes: ['*'] }] }, sources: [spiffeSource(svids)] }),
          onAudit: (e) => auditSink.write(e),
        });
        say(c('2', `    broker ${f('broker.sock')} (0600); SVID ${svid.identity.spiffeId} verified against the trust domain bundle`));
        const viaBroker = async (method: string, path: string, routeId: string) => {
          const r = await brokerIssue(f('broker.sock'), { method, url: `${base}${path}`, audience: 'orders-api', routeId, requestedKeyBinding: 'attested_workload' });
          if (!r.accepted) return Promise.resolve(new Response(JSON.stringify({ reason: r.response.reason_code }), { status: 599 }));
          return fetch(`${base}${path}`, { method, headers: r.headers });
        };

        const fetchAs = (cl: Caller, routeId: string, audience = 'orders-api') =>
          createSignedFetch({ privateKey: cl.key, kid: cl.kid, issuer: cl.issuer, subject: cl.subject, trustDomain: cl.trustDomain, audience, routeId, ttlSeconds: 300 });
        const status = async (p: Promise<Response>) => {
          const r = await p;
          const text = await r.text();
          let reason = '';
          try {
            reason = String((JSON.parse(text) as { reason?: string }).reason ?? '');
          } catch {
            /* not JSON */
          }
          return { status: r.status, reason, text };
        };

        say();
        say(c('1', '3. Trusted callers, each under its own source rule — accepted'));
        for (const [cl, label] of [
          [local, 'local software/JWKS script (subject_exact)'],
          [ec2, 'EC2-style service (subject_prefix ec2:i-)'],
          [n8n, 'external n8n automation runner (other trust domain)'],
        ] as const) {
          const r = await status(fetchAs(cl, 'orders.list')(`${base}/orders?status=open&limit=10`));
          check(`${label}: GET /orders`, r.status === 200 && r.text.includes(cl.subject), `${r.status} ${r.status === 200 ? `upstream saw ${cl.subject}` : r.reason}`);
        }
        const spiffeList = await status(viaBroker('GET', '/orders?status=open', 'orders.list'));
        check('same-cluster SPIFFE workload through the broker (attested_workload): GET /orders', spiffeList.status === 200 && spiffeList.text.includes(WORKLOAD), `${spiffeList.status} ${spiffeList.status === 200 ? `upstream saw ${WORKLOAD}` : spiffeList.reason}`);
        const refund = await status(viaBroker('POST', '/orders/ord_1/refund', 'orders.refund'));
        check('the same workload on the high-risk refund route (needs attested_workload)', refund.status === 200, `${refund.status} ${refund.reason}`);

        say();
        say(c('1', '4. Attacks — each denied before the Orders API is contacted'));
        const signed = (path: string, routeId: string, aud = 'orders-api') => {
          const p = issuePassport({ signingKey: local.key, kid: local.kid, issuer: local.issuer, subject: local.subject, audience: aud, trustDomain: local.trustDomain, ttlSeconds: 300 });
          const s = signRequest({ passport: p.token, privateKey: local.key, method: 'GET', url: `${base}${path}`, routeId });
          const headers: Record<string, string> = { ...s.headers, 'X-TrustPlane-Signed-Headers': s.signedHeaders.join(',') };
          return headers;
        };
        const expectDeny = async (label: string, p: Promise<Response>, wantStatus: number, wantReason: string) => {
          const r = await status(p);
          check(label, r.status === wantStatus && r.reason === wantReason, `${r.status} ${r.reason}`);
        };
        await expectDeny('tampered path (signed /orders/ord_1, sent /orders/ord_2)', fetch(`${base}/orders/ord_2`, { headers: signed('/orders/ord_1', 'orders.get') }), 403, 'request_binding_mismatch');
        const h = signed('/orders/ord_1', 'orders.get');
        const proof = h['X-TrustPlane-Proof']!;
        await expectDeny('corrupted proof', fetch(`${base}/orders/ord_1`, { headers: { ...h, 'X-TrustPlane-Proof': (proof[0] === 'A' ? 'B' : 'A') + proof.slice(1) } }), 403, 'invalid_request_proof');
        const once = signed('/orders/ord_1', 'orders.get');
        const first = await status(fetch(`${base}/orders/ord_1`, { headers: once }));
        check('original request', first.status === 200, String(first.status));
        await expectDeny('replay of that exact request', fetch(`${base}/orders/ord_1`, { headers: once }), 403, 'jti_replay');
        await expectDeny('no passport at all', fetch(`${base}/orders`), 401, 'missing_passport');
        await expectDeny('passport for another audience (billing-api)', fetch(`${base}/orders`, { headers: signed('/orders', 'orders.list', 'billing-api') }), 403, 'audience_mismatch');
        await expectDeny('software key on a route that needs attested_workload', fetchAs(ec2, 'orders.refund')(`${base}/orders/ord_1/refund`, { method: 'POST' }), 403, 'insufficient_key_binding');

        say();
        say(c('1', '5. Add a new client while the adapter runs — no restart'));
        const partner = mk('partner-etl', 'https://issuer.partner.example/jwks', 'etl:nightly-export');
        writeFileSync(f('partner.key'), `${formatPrivateKey(partner.key)}\n`, { mode: 0o600 });
        const before = await status(fetchAs(partner, 'orders.list')(`${base}/orders`));
        check('new client before it is added', before.status === 401 && before.reason === 'unknown_issuer_key', `${before.status} ${before.reason}`);
        await run(['bundle', 'merge-source', '--trust-material', f('trust-material.json'), '--policy-bundle', f('policy-bundle.json'), '--out-trust-material', f('tm.next.json'), '--out-policy-bundle', f('pb.next.json'), '--issuer', partner.issuer, '--trust-domain', partner.trustDomain, '--kid', partner.kid, '--public-key', encodeBase64url(partner.key.publicKey), '--route-id', 'orders.list', '--subject-exact', partner.subject, '--required-key-binding', 'software']);
        await sign('trust-material', f('tm.next.json'), f('trust-material.json'));
        await sign('policy-bundle', f('pb.next.json'), f('policy-bundle.json'));
        const waitFor = async (want: (r: { status: number; reason: string }) => boolean) => {
          const start = Date.now();
          let r = await status(fetchAs(partner, 'orders.list')(`${base}/orders`));
          while (!want(r) && Date.now() - start < 5000) {
            await new Promise((res) => setTimeout(res, 100));
            r = await status(fetchAs(partner, 'orders.list')(`${base}/orders`));
          }
          return { ...r, ms: Date.now() - start };
        };
        const added = await waitFor((r) => r.status === 200);
        check('new client accepted after the signed bundles changed', added.status === 200, `${added.status} after ${added.ms} ms, policy_version ${watcher.current()?.policy.policyVersion}`);

        say(c('1', '6. Remove and revoke it'));
        await run(['bundle', 'remove-source', '--trust-material', f('trust-material.json'), '--policy-bundle', f('policy-bundle.json'), '--out-trust-material', f('tm.next.json'), '--out-policy-bundle', f('pb.next.json'), '--kid', partner.kid, '--confirm-remove', '--revoke', '--reason', 'contract ended']);
        await sign('trust-material', f('tm.next.json'), f('trust-material.json'));
        await sign('policy-bundle', f('pb.next.json'), f('policy-bundle.json'));
        const removed = await waitFor((r) => r.status !== 200);
        check('removed client denied', removed.status === 401 || removed.status === 403, `${removed.status} ${removed.reason} after ${removed.ms} ms`);
        const still = await status(fetchAs(local, 'orders.list')(`${base}/orders`));
        check('everyone else unaffected', still.status === 200, String(still.status));

        say();
        if (failures === 0) say(c('32;1', 'All steps behaved as expected.'));
        else say(c('31;1', `${failures} step(s) did not behave as expected.`));
        if (opts.keep === true) say(c('2', `kept ${dir}`));
      } finally {
        process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
        watcher?.close();
        await brokerServer?.close();
        await svids?.close();
        await agent?.stop();
        await adapter?.close(2000);
        await new Promise<void>((r) => (upstream === undefined ? r() : upstream.close(() => r())));
        if (opts.keep !== true) rmSync(dir, { recursive: true, force: true });
      }
      if (failures > 0) process.exitCode = 1;
    });
}
