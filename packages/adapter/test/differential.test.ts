/**
 * The upstream-interpretation differential suite (issue 17, "Standing suites"): one signed policy
 * with overlapping exact and template routes, a GENERATED corpus of spellings signed over the
 * exact bytes sent, and real upstream stacks each routing with its own router — behind the
 * reverse proxy (node:http, Express ×3, Fastify, Hono, Go net/http, Flask/Werkzeug), behind each
 * in-process middleware, and behind a real NGINX using the forward-auth verifier.
 *
 * For every request: allowed ⇒ the handler that ran is the route the policy matched, with the
 * signed method, the signer's subject, the signed X-Tenant and the signed query; denied ⇒ no
 * upstream contact, the jti not consumed, and (where there is an audit sink) exactly one audit
 * event. docs/testing.md explains how to read a failure.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StaticPolicyProvider, Verifier, type AuditEvent, type BundlePair } from '@trustplane/core';
import {
  InspectableReplayStore,
  diffBundlePair,
  diffCorpus,
  freePort,
  meaningfulPairs,
  parseHandlerReply,
  sendRaw,
  signCase,
  signedQueryPairs,
  startFlaskUpstream,
  startGoUpstream,
  type DiffCase,
  type RawResponse,
  type SignedCase,
  type UpstreamStack,
} from '@trustplane/testkit';
import { startAdapter, startForwardAuthVerifier, MemoryAuditSink } from '../src/index.js';
import { expressMiddleware, expressUpstream, fastifyMiddleware, fastifyUpstream, honoMiddleware, honoUpstream, nodeHttpMiddleware, nodeHttpUpstream } from './differential-stacks.js';

const REPO_ROOT = new URL('../../../../', import.meta.url).pathname;
const NGINX = process.env['NGINX_BIN'] ?? '/usr/sbin/nginx';
/** Allowed requests each stack must have (the controls plus a margin): no vacuous pass. */
const MIN_ALLOWED_PER_STACK = 6;

type Enforcement = 'adapter' | 'middleware' | 'nginx forward-auth';

interface CaseResult {
  readonly s: SignedCase;
  readonly res: RawResponse | { error: string };
  readonly events: readonly AuditEvent[];
  readonly held: boolean;
}

interface StackRun {
  readonly name: string;
  readonly enforcement: Enforcement;
  readonly results: readonly CaseResult[];
  readonly seen: readonly string[];
}

/** One enforcement point in front of one stack: where to send, and what it recorded. */
interface Target {
  readonly name: string;
  readonly enforcement: Enforcement;
  readonly port: number;
  readonly audit: MemoryAuditSink | undefined;
  readonly store: InspectableReplayStore;
  readonly stack: UpstreamStack;
  close(): Promise<void>;
}

const closers: (() => Promise<void>)[] = [];
const runs: StackRun[] = [];
let corpus: DiffCase[] = [];
let setupError: Error | undefined;

async function behindAdapter(pair: BundlePair, stack: UpstreamStack): Promise<Target> {
  const audit = new MemoryAuditSink();
  const store = new InspectableReplayStore();
  const a = await startAdapter({ listen: { host: '127.0.0.1', port: 0 }, upstream: `http://127.0.0.1:${stack.port}`, policy: new StaticPolicyProvider(pair.policy), replayStore: store, audit });
  return { name: `adapter → ${stack.name}`, enforcement: 'adapter', port: Number(new URL(a.url).port), audit, store, stack, close: () => a.close(2000) };
}

async function inProcess(pair: BundlePair, start: (v: Verifier) => Promise<UpstreamStack>): Promise<Target> {
  const store = new InspectableReplayStore();
  const stack = await start(new Verifier({ policy: new StaticPolicyProvider(pair.policy), replayStore: store }));
  return { name: stack.name, enforcement: 'middleware', port: stack.port, audit: undefined, store, stack, close: () => Promise.resolve() };
}

function waitForPort(port: number, child: ChildProcess, what: () => string): Promise<void> {
  const deadline = Date.now() + 5000;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve();
      });
      c.once('error', () => {
        if (Date.now() > deadline || child.exitCode !== null) reject(new Error(`nginx did not start: ${what()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** The shipped deploy/nginx/trustplane.conf (addresses aside) in front of `stack`. */
async function behindNginx(pair: BundlePair, stack: UpstreamStack): Promise<Target> {
  const v = existsSync(NGINX) ? spawnSync(NGINX, ['-V'], { encoding: 'utf8' }) : undefined;
  if (v === undefined || v.status !== 0 || !`${v.stdout}${v.stderr}`.includes('http_auth_request_module')) {
    throw new Error(`nginx with http_auth_request_module is required at ${NGINX} for the differential suite (.ci/run installs nginx-light)`);
  }
  const audit = new MemoryAuditSink();
  const store = new InspectableReplayStore();
  const verifier = await startForwardAuthVerifier({ listen: { host: '127.0.0.1', port: 0 }, policy: new StaticPolicyProvider(pair.policy), replayStore: store, audit, trustForwardedHeaders: true });
  const dir = mkdtempSync(join(tmpdir(), 'tp-diff-nginx-'));
  const port = await freePort();
  const errorLog = join(dir, 'error.log');
  const shipped = readFileSync(join(REPO_ROOT, 'deploy/nginx/trustplane.conf'), 'utf8');
  const server = shipped
    .replace('listen 80;', `listen 127.0.0.1:${port};`)
    .replace('proxy_pass http://127.0.0.1:8080;', `proxy_pass http://127.0.0.1:${stack.port};`)
    .replace('proxy_pass http://127.0.0.1:8081/auth;', `proxy_pass ${verifier.url}/auth;`);
  assert.notEqual(server, shipped);
  const conf = join(dir, 'nginx.conf');
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((n) => `  ${n}_temp_path ${join(dir, n)};`).join('\n');
  writeFileSync(conf, `${process.getuid?.() === 0 ? 'user root;\n' : ''}daemon off;\nmaster_process on;\nworker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log ${errorLog} warn;\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n${temp}\n${server}\n}\n`);
  const child = spawn(NGINX, ['-e', errorLog, '-p', dir, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    await verifier.close();
    rmSync(dir, { recursive: true, force: true });
  };
  await waitForPort(port, child, () => `${stderr}${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return { name: `nginx forward-auth → ${stack.name}`, enforcement: 'nginx forward-auth', port, audit, store, stack, close: stop };
}

async function runTarget(t: Target, pair: BundlePair): Promise<StackRun> {
  const results: CaseResult[] = [];
  for (const c of corpus) {
    const s = signCase(c, pair, 'orders.example');
    const res = await sendRaw(t.port, s.bytes).catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }));
    results.push({ s, res, events: [], held: false });
  }
  // The decisions are recorded after the answer is written: let the last one land.
  await new Promise((r) => setTimeout(r, 50));
  const finished = results.map((r) => ({ ...r, events: t.audit?.events.filter((e) => e.request_id === r.s.requestId) ?? [], held: t.store.holds(r.s.replayKey) }));
  return { name: t.name, enforcement: t.enforcement, results: finished, seen: await t.stack.seen() };
}

before(async () => {
  try {
    const pair = diffBundlePair();
    corpus = diffCorpus();
    const upstreams: (() => Promise<UpstreamStack>)[] = [
      nodeHttpUpstream,
      () => expressUpstream('default'),
      () => expressUpstream('case-sensitive'),
      () => expressUpstream('case-sensitive+router'),
      fastifyUpstream,
      honoUpstream,
      startGoUpstream,
      startFlaskUpstream,
    ];
    const targets: Target[] = [];
    const started = await Promise.all(upstreams.map((u) => u()));
    for (const s of started) closers.push(() => s.close());
    for (const s of started) targets.push(await behindAdapter(pair, s));
    for (const m of [nodeHttpMiddleware, expressMiddleware, fastifyMiddleware, honoMiddleware]) {
      const t = await inProcess(pair, m);
      closers.push(() => t.stack.close());
      targets.push(t);
    }
    const goBehindNginx = await startGoUpstream();
    closers.push(() => goBehindNginx.close());
    targets.push(await behindNginx(pair, goBehindNginx));
    for (const t of targets) closers.unshift(() => t.close());
    runs.push(...(await Promise.all(targets.map((t) => runTarget(t, pair)))));
  } catch (err) {
    setupError = err instanceof Error ? err : new Error(String(err));
  }
});

after(async () => {
  for (const c of closers) await c().catch(() => undefined);
});

/**
 * An answer written by an HTTP parser, not by a verifier decision: the adapter's fixed
 * `MALFORMED_RAW` for what Node's parser cannot read (no Date, no Content-Length), or NGINX's
 * own 400 page for a request line it refuses (no auth sub-request happened).
 */
function parserRefusal(enforcement: Enforcement, res: RawResponse): boolean {
  if (res.status !== 400) return false;
  if (enforcement === 'nginx forward-auth') return !res.body.includes('"allowed"');
  return enforcement === 'adapter' && res.body === '{"allowed":false,"reason":"malformed_request"}' && !res.headers.has('date') && !res.headers.has('content-length');
}

function describe(r: CaseResult): string {
  const res = 'error' in r.res ? `error ${r.res.error}` : `${r.res.status} ${r.res.body.slice(0, 160)}`;
  return `${r.s.c.name} [${r.s.c.caller.name} ${r.s.c.method}, signed as ${r.s.routeId}] → ${res}`;
}

interface Verdict {
  readonly allowed: number;
  readonly denied: number;
  readonly unrouted: number;
  readonly parserRefused: number;
  readonly violations: string[];
}

/** Check every request of one stack against the invariant; returns what broke it. */
function judge(run: StackRun): Verdict {
  const violations: string[] = [];
  let allowed = 0;
  let denied = 0;
  let unrouted = 0;
  let parserRefused = 0;
  const seenCount = new Map<string, number>();
  for (const id of run.seen) seenCount.set(id, (seenCount.get(id) ?? 0) + 1);
  const corpusIds = new Set(run.results.map((r) => r.s.requestId));
  const strangers = run.seen.filter((id) => !corpusIds.has(id));
  if (strangers.length > 0) violations.push(`the upstream saw ${strangers.length} request(s) without a corpus X-Request-Id: ${JSON.stringify(strangers.slice(0, 5))}`);
  for (const r of run.results) {
    const fail = (why: string) => violations.push(`${why}: ${describe(r)}`);
    const { c } = r.s;
    if ('error' in r.res) {
      fail('no HTTP answer');
      continue;
    }
    const reached = seenCount.get(r.s.requestId) ?? 0;
    const reply = parseHandlerReply(r.res.body);
    let isAllowed: boolean;
    if (run.enforcement === 'middleware') {
      // No audit sink in-process: "allowed" is the guard having passed the request on.
      isAllowed = reached > 0;
    } else {
      if (r.events.length === 0 && reached === 0 && !r.held && parserRefusal(run.enforcement, r.res)) {
        // Refused before it was a request (docs/audit-events.md: no event): nothing to attribute.
        parserRefused++;
        continue;
      }
      if (r.events.length !== 1) {
        fail(`${r.events.length} audit events (exactly one expected)`);
        continue;
      }
      isAllowed = r.events[0]!.accepted;
    }
    if (c.kind === 'control-allow' && !isAllowed) fail('control case not allowed');
    if (c.kind === 'control-deny' && isAllowed) fail('control case not denied');
    if (!isAllowed) {
      denied++;
      if (reached !== 0) fail(`denied, yet the upstream saw it ${reached} time(s)`);
      if (r.held) fail('denied, yet its jti was consumed');
      if (reply !== undefined) fail(`denied, yet handler ${reply.handler} answered`);
      if (r.res.status < 400) fail('denied with a non-error status');
      continue;
    }
    allowed++;
    if (!r.held) fail('allowed, yet its jti is not in the replay store');
    if (reached !== 1) fail(`allowed, and the upstream saw it ${reached} time(s) (once expected)`);
    const policyRoute = run.enforcement === 'middleware' ? reply?.policy_route : r.events[0]!.route_id;
    if (policyRoute !== r.s.routeId) fail(`authorized as ${String(policyRoute)}, signed as ${r.s.routeId}`);
    if (reply === undefined) {
      // The app ran no handler at all (its own 404/405/redirect): nothing unauthorized ran.
      if (c.kind === 'control-allow') fail('control case reached no handler');
      unrouted++;
      continue;
    }
    if (reply.handler !== policyRoute) fail(`allowed as ${String(policyRoute)}, handler ${reply.handler} ran`);
    if (reply.method !== c.method) fail(`signed method ${c.method}, the app ran ${reply.method}`);
    if (reply.subject !== c.caller.subject) fail(`signer ${c.caller.subject}, the app saw subject ${JSON.stringify(reply.subject)}`);
    const tenant = r.s.signedValues.get('x-tenant');
    if (tenant !== undefined && reply.tenant !== tenant) fail(`signed X-Tenant ${JSON.stringify(tenant)}, the app saw ${JSON.stringify(reply.tenant)}`);
    const q = signedQueryPairs(c.query);
    if (JSON.stringify(meaningfulPairs(reply.query)) !== JSON.stringify(q)) fail(`signed query ${JSON.stringify(q)}, the app saw ${JSON.stringify(reply.query)}`);
  }
  if (allowed < MIN_ALLOWED_PER_STACK) violations.push(`only ${allowed} allowed requests (at least ${MIN_ALLOWED_PER_STACK} expected): the suite would pass vacuously`);
  return { allowed, denied, unrouted, parserRefused, violations };
}

const STACK_NAMES = [
  'adapter → node:http',
  'adapter → express default',
  'adapter → express case-sensitive',
  'adapter → express case-sensitive+router',
  'adapter → fastify',
  'adapter → hono',
  'adapter → go net/http',
  'adapter → flask/werkzeug',
  'middleware node:http',
  'middleware express case-sensitive+router',
  'middleware fastify',
  'middleware hono',
  'nginx forward-auth → go net/http',
];

const verdicts = new Map<string, Verdict>();

for (const name of STACK_NAMES) {
  test(`differential: ${name} runs exactly what the policy authorized`, () => {
    if (setupError !== undefined) throw setupError;
    const run = runs.find((r) => r.name === name);
    assert.ok(run !== undefined, `stack ${name} did not run`);
    assert.equal(run.results.length, corpus.length);
    const v = judge(run);
    verdicts.set(name, v);
    assert.deepEqual(v.violations, [], `${v.violations.length} violation(s) on ${name}:\n${v.violations.join('\n')}`);
  });
}

test('differential: every stack ran the whole corpus (counts)', () => {
  if (setupError !== undefined) throw setupError;
  assert.equal(runs.length, STACK_NAMES.length);
  assert.ok(corpus.length >= 150, `the generated corpus has ${corpus.length} cases`);
  let allowed = 0;
  let denied = 0;
  let other = 0;
  for (const run of runs) {
    const v = verdicts.get(run.name) ?? judge(run);
    allowed += v.allowed;
    denied += v.denied;
    other += v.parserRefused;
  }
  console.log(`differential: ${corpus.length} cases x ${runs.length} stacks, ${allowed} allowed, ${denied} denied${other > 0 ? `, ${other} refused by an HTTP parser before any decision` : ''}`);
  assert.ok(allowed >= MIN_ALLOWED_PER_STACK * runs.length, `${allowed} allowed requests in all`);
});

test('differential: the judge flags every broken clause (synthetic runs)', () => {
  const pair = diffBundlePair();
  const control = diffCorpus().find((c) => c.name === 'control: reader GET /v1/orders/123')!;
  const s = signCase(control, pair, 'orders.example');
  const reply = { handler: 'orders.get', method: 'GET', subject: 'svc:reader', tenant: null, query: [] as [string, string][] };
  const answer = (body: unknown, status = 200): RawResponse => ({ status, headers: new Map([['date', 'now']]), body: JSON.stringify(body) });
  const allow = { accepted: true, route_id: 'orders.get', request_id: s.requestId } as AuditEvent;
  const deny = { accepted: false, request_id: s.requestId } as AuditEvent;
  const denial = answer({ allowed: false, reason: 'forbidden' }, 403);
  const violations = (r: Partial<CaseResult>, seen: string[] = [s.requestId], enforcement: Enforcement = 'adapter', c: DiffCase = control) =>
    judge({ name: 'synthetic', enforcement, results: [{ s: { ...s, c }, res: answer(reply), events: [allow], held: true, ...r }], seen }).violations.filter((v) => !v.includes('vacuously'));

  assert.deepEqual(violations({}), [], 'a correct allowed request passes');
  assert.deepEqual(violations({ res: denial, events: [deny], held: false }, [], 'adapter', { ...control, kind: 'path' }), [], 'a correct denial passes');
  const expectOne = (v: string[], re: RegExp) => assert.ok(v.some((x) => re.test(x)), `${re} not among ${JSON.stringify(v)}`);
  expectOne(violations({ res: answer({ ...reply, handler: 'orders.search' }) }), /allowed as orders\.get, handler orders\.search ran/);
  expectOne(violations({ res: answer({ ...reply, method: 'DELETE' }) }), /signed method GET, the app ran DELETE/);
  expectOne(violations({ res: answer({ ...reply, subject: 'svc:admin' }) }), /the app saw subject "svc:admin"/);
  expectOne(violations({ res: answer({ ...reply, query: [['a', '1']] }) }), /signed query \[\], the app saw/);
  expectOne(violations({ held: false }), /not in the replay store/);
  expectOne(violations({}, [s.requestId, s.requestId]), /the upstream saw it 2 time/);
  expectOne(violations({}, [s.requestId, 'stranger']), /without a corpus X-Request-Id/);
  expectOne(violations({ events: [allow, allow] }), /2 audit events/);
  expectOne(violations({ events: [] }), /0 audit events/);
  expectOne(violations({ events: [{ ...allow, route_id: 'orders.search' }], res: answer({ ...reply, handler: 'orders.search' }) }), /authorized as orders\.search, signed as orders\.get/);
  expectOne(violations({ res: denial, events: [deny], held: false }), /control case not allowed/);
  expectOne(violations({ res: denial, events: [deny], held: false }, [s.requestId], 'adapter', { ...control, kind: 'path' }), /denied, yet the upstream saw it/);
  expectOne(violations({ res: denial, events: [deny], held: true }, [], 'adapter', { ...control, kind: 'path' }), /denied, yet its jti was consumed/);
  expectOne(violations({ res: answer(reply, 403), events: [deny], held: false }, [], 'adapter', { ...control, kind: 'path' }), /denied, yet handler orders\.get answered/);
  expectOne(violations({}, [s.requestId], 'adapter', { ...control, kind: 'control-deny' }), /control case not denied/);
  expectOne(violations({ res: answer({ ...reply, policy_route: 'orders.get', handler: 'orders.search' }), events: [] }, [s.requestId], 'middleware'), /handler orders\.search ran/);
  expectOne(violations({ res: { error: 'reset' } }), /no HTTP answer/);
  // A signed X-Tenant must be what the app reads.
  const post = diffCorpus().find((c) => c.kind === 'control-allow' && c.method === 'POST')!;
  const ps = signCase(post, pair, 'orders.example');
  const created = { accepted: true, route_id: 'orders.create', request_id: ps.requestId } as AuditEvent;
  const tenantRun = (tenant: string) => judge({ name: 'synthetic', enforcement: 'adapter', results: [{ s: ps, res: answer({ handler: 'orders.create', method: 'POST', subject: 'svc:reader', tenant, query: [] }), events: [created], held: true }], seen: [ps.requestId] }).violations.filter((v) => !v.includes('vacuously'));
  assert.deepEqual(tenantRun('acme'), []);
  expectOne(tenantRun('acme,evil'), /signed X-Tenant "acme", the app saw "acme,evil"/);
});
