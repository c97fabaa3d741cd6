/**
 * `trustplane up`: the TrustPlane components as long-running local processes in front of the
 * user's own API — the adapter (signed bundles, hot reload) and a broker on a Unix socket — with
 * keys and signed bundles kept in a state directory (default `./.trustplane`), reused on the
 * next run. Prints what to run next; Ctrl-C (or SIGTERM) stops everything and exits 0.
 *
 * Development defaults, printed at start: without `--route`, every path of up to six segments is
 * routed for GET/POST/PUT/PATCH/DELETE, so any request to the API can be tried at once. Real
 * deployments route explicitly (docs/bundles.md).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import {
  BundleWatcher,
  MemoryReplayStore,
  encodeBase64url,
  formatPrivateKey,
  generatePrivateKey,
  parseBundlePair,
  parsePublicKey,
  readBundleState,
  readPrivateKeyFile,
  signDocument,
  type BundleRejectedEvent,
  type Ed25519PrivateKey,
} from '@trustplane/core';
import { failure, usageError, type CliIo } from '../output.js';
import { writeFileAtomic } from '../files.js';
import { writePairAtomic } from './bundle/io.js';
import { parseHostPort } from './adapter.js';

interface UpOptions {
  upstream: string;
  dir: string;
  listen: string;
  adminListen: string;
  audience: string;
  route?: string[];
  auditLog: string;
}

const BUNDLE_SIGNER = 'local://trustplane-up';
const BUNDLE_KID = 'up-bundles-1';
const CLIENT_ISSUER = 'local://trustplane-up/client';
const CLIENT_KID = 'up-client-1';
const CLIENT_SUBJECT = 'svc:local-client';
const BROKER_ISSUER = 'local://trustplane-up/broker';
const BROKER_KID = 'up-broker-1';
const BROKER_SUBJECT = 'svc:local-broker-caller';
const TRUST_DOMAIN = 'local.trustplane';
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

interface RouteSpec {
  routeId: string;
  method: string;
  pathTemplate: string;
}

/** `METHOD /path/{param}` or `METHOD /path/{param}=route.id`. */
export function parseRouteSpec(value: string): RouteSpec {
  const m = /^([A-Z]+)\s+(\/\S*?)(?:=([\w.:-]+))?$/.exec(value.trim());
  if (m === null) throw usageError(`--route ${JSON.stringify(value)}: expected 'METHOD /path/{param}' or 'METHOD /path=route.id'`);
  const method = m[1]!;
  const pathTemplate = m[2]!;
  const derived = `${method.toLowerCase()}${pathTemplate.replace(/[{}]/g, '').replace(/[^\w]+/g, '.').replace(/\.$/, '') || '.root'}`;
  return { method, pathTemplate, routeId: m[3] ?? derived };
}

/** The development catch-all: `/`, `/{p1}`, … `/{p1}/…/{p6}` for each method. */
function catchAllRoutes(): RouteSpec[] {
  const out: RouteSpec[] = [];
  for (const method of METHODS) {
    for (let depth = 0; depth <= 6; depth++) {
      const tpl = depth === 0 ? '/' : Array.from({ length: depth }, (_, i) => `/{p${i + 1}}`).join('');
      out.push({ method, pathTemplate: tpl, routeId: `any.${method.toLowerCase()}.${depth}` });
    }
  }
  return out;
}

function keyIn(dir: string, name: string): Ed25519PrivateKey {
  const file = path.join(dir, name);
  if (existsSync(file)) return readPrivateKeyFile(file);
  const key = generatePrivateKey();
  writeFileAtomic(file, `${formatPrivateKey(key)}\n`, { mode: 0o600, overwrite: false });
  return key;
}

export function registerUp(program: Command, io: CliIo): void {
  program
    .command('up')
    .description('Run TrustPlane locally in front of your own API: adapter + broker, keys and signed bundles in a state directory')
    .addOption(new Option('--upstream <url>', 'your API, e.g. http://127.0.0.1:3000').makeOptionMandatory())
    .addOption(new Option('--dir <dir>', 'state directory (keys, signed bundles, broker socket, audit log)').default('.trustplane'))
    .addOption(new Option('--listen <host:port>', 'adapter address').default('127.0.0.1:8080'))
    .addOption(new Option('--admin-listen <host:port>', 'adapter /healthz /readyz /metrics').default('127.0.0.1:9090'))
    .addOption(new Option('--audience <aud>', 'the audience of your API').default('my-api'))
    .addOption(new Option('--route <spec>', "a route 'METHOD /path/{param}[=route.id]' (repeatable; default: a development catch-all)").argParser((v: string, p: string[] | undefined) => [...(p ?? []), v]))
    .addOption(new Option('--audit-log <target>', 'audit events: a file path, stdout, or off').default('', 'DIR/audit.jsonl'))
    .action(async (o: UpOptions) => {
      const { startAdapter, createAuditSink, log } = await import('@trustplane/adapter');
      const { Broker, probeSocket, softwareSource, startBrokerServer } = await import('@trustplane/broker');
      try {
        const u = new URL(o.upstream);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
      } catch {
        throw usageError(`--upstream must be an http:// or https:// URL, got ${JSON.stringify(o.upstream)}`);
      }
      const listen = parseHostPort(o.listen, '--listen');
      const admin = parseHostPort(o.adminListen, '--admin-listen');
      const routes = o.route === undefined ? catchAllRoutes() : o.route.map(parseRouteSpec);
      const dir = path.resolve(o.dir);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const f = (n: string) => path.join(dir, n);
      // The directory holds private keys: keep it out of git when it sits in a working tree
      // (`npx trustplane up` in a project writes ./.trustplane).
      if (!existsSync(f('.gitignore'))) writeFileSync(f('.gitignore'), '# written by trustplane up: private keys live here\n*\n', { mode: 0o644 });
      // Another `up` running on this directory would hot-reload the bundles written below: find
      // it before anything is written (its broker socket answers).
      if ((await probeSocket(f('broker.sock'))) === 'live') throw failure(`another trustplane up is running on ${dir} (its broker socket answers); stop it first, or use another --dir`);

      // Keys are created once and reused; bundles are (re)written and signed on every start, so a
      // changed --route or --listen takes effect — and edits made with `trustplane bundle …`
      // while it runs last until the next start.
      const bundleKey = keyIn(dir, 'bundle-signing.key');
      const clientKey = keyIn(dir, 'client.key');
      const brokerKey = keyIn(dir, 'broker.key');
      const base = `http://${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
      const sources = [
        { source_type: 'software_jwks', issuer: CLIENT_ISSUER, trust_domain: TRUST_DOMAIN, subject_exact: CLIENT_SUBJECT, required_key_binding: 'software' },
        { source_type: 'software_jwks', issuer: BROKER_ISSUER, trust_domain: TRUST_DOMAIN, subject_exact: BROKER_SUBJECT, required_key_binding: 'software' },
      ];
      const trust = {
        version: 'trustplane-trust-material-v1',
        issuers: [
          { issuer: CLIENT_ISSUER, trust_domain: TRUST_DOMAIN, source_type: 'software_jwks', keys: [{ kid: CLIENT_KID, alg: 'EdDSA', public_key_b64url: encodeBase64url(clientKey.publicKey), status: 'active' }] },
          { issuer: BROKER_ISSUER, trust_domain: TRUST_DOMAIN, source_type: 'software_jwks', keys: [{ kid: BROKER_KID, alg: 'EdDSA', public_key_b64url: encodeBase64url(brokerKey.publicKey), status: 'active' }] },
        ],
        revocations: [],
      };
      const previousVersion = (() => {
        try {
          const v = (JSON.parse(readFileSync(f('policy-bundle.json'), 'utf8')) as { policy_version?: unknown }).policy_version;
          return typeof v === 'number' ? v : 0;
        } catch {
          return 0;
        }
      })();
      // The high-water mark the adapter keeps (DIR/bundle-state.json): the new pair must be above
      // it even when policy-bundle.json was deleted or edited back. A bad mark stops here.
      const stateFile = f('bundle-state.json');
      let markVersion = 0;
      try {
        markVersion = readBundleState(stateFile)?.policyVersion ?? 0;
      } catch (err) {
        throw failure(`${err instanceof Error ? err.message : String(err)}`);
      }
      const bundle = {
        version: 'trustplane-bundle-v1',
        kind: 'policy_runtime_bundle',
        policy_id: 'trustplane-up',
        policy_version: Math.max(previousVersion, markVersion) + 1,
        trust_domain: TRUST_DOMAIN,
        apis: [{ api_id: o.audience, audience: o.audience, base_url: base }],
        route_groups: [
          {
            route_group_id: 'local',
            api_id: o.audience,
            routes: routes.map((r) => ({ route_id: r.routeId, method: r.method, path_template: r.pathTemplate, required_key_binding: 'software', freshness_class: 'offline-ok', allowed_sources: sources })),
          },
        ],
        default_required_key_binding: 'software',
        default_freshness_class: 'offline-ok',
        revocations: [],
      };
      const sign = (doc: object) => `${JSON.stringify(signDocument(doc, bundleKey, { kid: BUNDLE_KID, signerIssuer: BUNDLE_SIGNER }), null, 2)}\n`;
      const trustText = sign(trust);
      const bundleText = sign(bundle);
      const keys = new Map([[BUNDLE_KID, parsePublicKey(encodeBase64url(bundleKey.publicKey))]]);
      // Loaded in memory first: flags that make a pair the adapter would refuse (a --route given
      // twice) stop here, before the pair on disk is replaced.
      try {
        parseBundlePair(Buffer.from(trustText), Buffer.from(bundleText), { trustMaterialKeys: keys, policyBundleKeys: keys, trustMaterialFile: f('trust-material.json'), policyBundleFile: f('policy-bundle.json') });
      } catch (err) {
        throw usageError(`these flags make bundles that would not load: ${err instanceof Error ? err.message : String(err)}`);
      }
      writePairAtomic([
        { file: f('trust-material.json'), data: trustText },
        { file: f('policy-bundle.json'), data: bundleText },
      ]);

      const watcher = new BundleWatcher({ trustMaterialFile: f('trust-material.json'), policyBundleFile: f('policy-bundle.json'), trustMaterialKeys: keys, policyBundleKeys: keys, stateFile });
      const rejected: string[] = [];
      watcher.on('rejected', (e: BundleRejectedEvent) => {
        rejected.push(`${e.reason}: ${e.detail}`);
        log('warn', 'bundle pair rejected; the last good pair keeps serving', { reason: e.reason, detail: e.detail });
      });
      if (!watcher.start()) {
        watcher.close();
        throw failure(`the generated bundles did not load: ${rejected[0] ?? 'unknown error'}`);
      }
      const audit = createAuditSink(o.auditLog === '' ? f('audit.jsonl') : o.auditLog);
      const socketPath = f('broker.sock');
      const broker = await startBrokerServer({
        socketPath,
        broker: new Broker({ policy: { issuer: BROKER_ISSUER, trustDomain: TRUST_DOMAIN, signingKey: brokerKey, kid: BROKER_KID, allow: [{ audience: o.audience, routes: ['*'] }] }, sources: [softwareSource(BROKER_SUBJECT)] }),
        onAudit: (e) => audit.write(e),
        onLog: (level, msg, fields) => log(level, msg, fields),
      }).catch((err: unknown) => {
        watcher.close();
        throw failure(`cannot start the broker: ${err instanceof Error ? err.message : String(err)}`);
      });

      // The broker is up before the adapter, so /readyz answering means both are.
      const adapter = await startAdapter({ listen, admin, upstream: o.upstream, policy: watcher, replayStore: new MemoryReplayStore(), audit }).catch(async (err: unknown) => {
        watcher.close();
        await broker.close();
        throw failure(`cannot start the adapter: ${err instanceof Error ? err.message : String(err)}`);
      });
      const example = (o.route === undefined ? routes.find((r) => r.routeId === 'any.get.1') : routes.find((r) => r.method === 'GET')) ?? routes[0]!;
      const examplePath = o.route === undefined ? '/hello' : example.pathTemplate.replace(/\{[^}]+\}/g, 'x');
      const relPath = (p: string) => (path.relative(process.cwd(), p).startsWith('..') ? p : path.relative(process.cwd(), p) || '.');
      // Printed commands are copied into a shell: quote a path that needs it.
      const rel = (p: string) => {
        const r = relPath(p);
        return /^[A-Za-z0-9_./:@%+=,-]+$/.test(r) ? r : `'${r.replace(/'/g, `'\\''`)}'`;
      };
      // Signal handlers before the lines that say we are up: a SIGTERM sent on reading them must find them.
      const stopped = new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log('info', 'shutting down', { signal });
          watcher.close();
          void Promise.all([adapter.close(5000), broker.close()])
            .then(() => audit.close())
            .then(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      io.stdout(
        [
          `trustplane up: ready`,
          `  adapter   ${adapter.url} → ${o.upstream}   (admin ${adapter.adminUrl ?? 'off'})`,
          `  broker    ${rel(socketPath)}`,
          `  state     ${rel(dir)}  (keys, signed bundles, bundle-state.json, audit.jsonl)`,
          `  routes    ${o.route === undefined ? `development catch-all: ${METHODS.join('/')} on paths of 0–6 segments` : routes.map((r) => `${r.method} ${r.pathTemplate} (${r.routeId})`).join(', ')}`,
          ``,
          `Next:`,
          `  # sign a request with the local client key and send it`,
          `  trustplane sign --private-key ${rel(f('client.key'))} --kid ${CLIENT_KID} --issuer ${CLIENT_ISSUER} --subject ${CLIENT_SUBJECT} --trust-domain ${TRUST_DOMAIN} \\`,
          `    --audience ${o.audience} --route-id ${example.routeId} --method ${example.method} --url ${base}${examplePath} --curl | sh`,
          `  # or get the headers from the broker (the caller holds no key)`,
          `  trustplane broker issue --socket ${rel(socketPath)} --audience ${o.audience} --route-id ${example.routeId} --method ${example.method} --url ${base}${examplePath} --curl | sh`,
          `  # without a passport the adapter answers 401 missing_passport`,
          `  curl -i ${base}${examplePath}`,
          `Ctrl-C stops everything.`,
          ``,
        ].join('\n'),
      );
      await stopped;
      io.stderr('trustplane up: stopped\n');
    });
}
