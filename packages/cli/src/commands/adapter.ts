/**
 * `trustplane adapter` (also `trustplane-adapter`): the verifying reverse proxy in front of an
 * API. Every flag can also come from the environment (TRUSTPLANE_<FLAG>, shown in --help) and
 * from a JSON config file (--config); precedence: flag > environment > config file > default.
 * Invalid configuration stops startup with one clear line (exit 2).
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { BundleWatcher, MemoryReplayStore, parsePublicKey, buildAuditEvent, DEV_ALLOW_UNSIGNED_FLAG, type BundleLoadedEvent, type BundleRejectedEvent, type Ed25519PublicKey, type ReplayStore } from '@trustplane/core';
import { startAdapter, RedisReplayStore, createAuditSink, log, setLogLevel, type LogLevel } from '@trustplane/adapter';
import { usageError, failure, type CliIo } from '../output.js';
import { defaultKid } from '../files.js';

interface AdapterFlags {
  config?: string;
  listen: string;
  adminListen: string;
  upstream?: string;
  bundle?: string;
  policyBundle?: string;
  bundleSignaturePublicKey?: string[];
  policyBundleSignaturePublicKey?: string[];
  policyBundleFreshnessWindow: string;
  routePolicyMode: string;
  routeId?: string;
  proofMode: string;
  replay: string;
  replicas: string;
  auditLog: string;
  maxBodyBytes: string;
  skew: string;
  maxLifetime: string;
  logLevel: string;
  devAllowUnsignedBundles?: boolean;
}

/** HOST:PORT (IPv6 as [::1]:PORT). */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65535) throw usageError(`${flag} must be HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function positiveInt(value: string, flag: string, allowZero = false): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || (!allowZero && n === 0) || !Number.isSafeInteger(n)) throw usageError(`${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${JSON.stringify(value)}`);
  return n;
}

/** `KID=B64URL`, or a bare B64URL trusted under its default kid (`key-<16 hex of fingerprint>`). */
export function parseSigningKeys(values: readonly string[], flag: string): Map<string, Ed25519PublicKey> {
  const map = new Map<string, Ed25519PublicKey>();
  for (const v of values) {
    const eq = v.indexOf('=');
    const [kid, b64] = eq > 0 ? [v.slice(0, eq), v.slice(eq + 1)] : [undefined, v];
    let key: Ed25519PublicKey;
    try {
      key = parsePublicKey(b64);
    } catch (err) {
      throw usageError(`${flag}: ${err instanceof Error ? err.message : String(err)}`);
    }
    map.set(kid ?? defaultKid(key.raw), key);
  }
  return map;
}

const CONFIG_KEYS: Record<string, keyof AdapterFlags> = {
  listen: 'listen',
  admin_listen: 'adminListen',
  upstream: 'upstream',
  bundle: 'bundle',
  policy_bundle: 'policyBundle',
  bundle_signature_public_keys: 'bundleSignaturePublicKey',
  policy_bundle_signature_public_keys: 'policyBundleSignaturePublicKey',
  policy_bundle_freshness_window: 'policyBundleFreshnessWindow',
  route_policy_mode: 'routePolicyMode',
  route_id: 'routeId',
  proof_mode: 'proofMode',
  replay: 'replay',
  replicas: 'replicas',
  audit_log: 'auditLog',
  max_body_bytes: 'maxBodyBytes',
  skew: 'skew',
  max_lifetime: 'maxLifetime',
  log_level: 'logLevel',
  dev_allow_unsigned_bundles: 'devAllowUnsignedBundles',
};

/** Apply a JSON config file to every option still at its default (flags and env win). */
function applyConfigFile(cmd: Command, opts: AdapterFlags): void {
  if (opts.config === undefined) return;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(opts.config, 'utf8'));
  } catch (err) {
    throw usageError(`--config ${opts.config}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw usageError(`--config ${opts.config}: must be a JSON object`);
  for (const [key, value] of Object.entries(doc)) {
    const name = CONFIG_KEYS[key];
    if (name === undefined) throw usageError(`--config ${opts.config}: unknown setting ${JSON.stringify(key)} (known: ${Object.keys(CONFIG_KEYS).join(', ')})`);
    const source = cmd.getOptionValueSource(name);
    if (source !== undefined && source !== 'default') continue;
    const ok = Array.isArray(value) ? value.every((x) => typeof x === 'string') : ['string', 'number', 'boolean'].includes(typeof value);
    if (!ok) throw usageError(`--config ${opts.config}: ${key} has the wrong type`);
    cmd.setOptionValueWithSource(name, Array.isArray(value) ? value : typeof value === 'boolean' ? value : String(value), 'config');
  }
}

export function registerAdapter(program: Command, io: CliIo): void {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_${name}`);
  const cmd = program
    .command('adapter')
    .description('Run the verifying reverse proxy in front of an API (every request verified locally before it reaches the upstream)')
    .addOption(env(new Option('--config <file>', 'JSON config file (keys: snake_case flag names)'), 'CONFIG'))
    .addOption(env(new Option('--listen <host:port>', 'address to serve on').default('127.0.0.1:8080'), 'LISTEN'))
    .addOption(env(new Option('--admin-listen <host:port>', 'address of /healthz, /readyz, /metrics').default('127.0.0.1:9090'), 'ADMIN_LISTEN'))
    .addOption(env(new Option('--upstream <url>', 'the protected API, e.g. http://127.0.0.1:3000'), 'UPSTREAM'))
    .addOption(env(new Option('--bundle <file>', 'signed trust material (issuer keys)'), 'BUNDLE'))
    .addOption(env(new Option('--policy-bundle <file>', 'signed policy bundle (trustplane-bundle-v1)'), 'POLICY_BUNDLE'))
    .addOption(env(new Option('--bundle-signature-public-key <kid=b64url>', 'trusted signing key of the trust material (repeatable)').argParser((v: string, p: string[] | undefined) => [...(p ?? []), ...v.split(',').filter((x) => x !== '')]), 'BUNDLE_SIGNATURE_PUBLIC_KEY'))
    .addOption(env(new Option('--policy-bundle-signature-public-key <kid=b64url>', 'trusted signing key of the policy bundle (repeatable; default: the trust material keys)').argParser((v: string, p: string[] | undefined) => [...(p ?? []), ...v.split(',').filter((x) => x !== '')]), 'POLICY_BUNDLE_SIGNATURE_PUBLIC_KEY'))
    .addOption(env(new Option('--policy-bundle-freshness-window <seconds>', 'realtime routes need the bundle confirmed within this window').default('5'), 'POLICY_BUNDLE_FRESHNESS_WINDOW'))
    .addOption(env(new Option('--route-policy-mode <mode>', 'request (method + path_template) or route-id').choices(['request', 'route-id']).default('request'), 'ROUTE_POLICY_MODE'))
    .addOption(env(new Option('--route-id <id>', 'the one route this adapter serves (route-id mode)'), 'ROUTE_ID'))
    .addOption(env(new Option('--proof-mode <mode>', 'request proof format').choices(['transcript-v1']).default('transcript-v1'), 'PROOF_MODE'))
    .addOption(env(new Option('--replay <store>', 'replay store: memory, or redis://, rediss://, redis+sentinel://, redis+cluster:// URL').default('memory'), 'REPLAY'))
    .addOption(env(new Option('--replicas <n>', 'declared number of adapter replicas (memory replay store needs 1)').default('1'), 'REPLICAS'))
    .addOption(env(new Option('--audit-log <target>', 'audit events: stdout, off, or a file path').default('stdout'), 'AUDIT_LOG'))
    .addOption(env(new Option('--max-body-bytes <n>', 'larger bodies are refused with 413').default(String(1024 * 1024)), 'MAX_BODY_BYTES'))
    .addOption(env(new Option('--skew <seconds>', 'allowed clock skew').default('30'), 'SKEW'))
    .addOption(env(new Option('--max-lifetime <seconds>', 'maximum passport lifetime').default('900'), 'MAX_LIFETIME'))
    .addOption(env(new Option('--log-level <level>', 'debug, info, warn, error').choices(['debug', 'info', 'warn', 'error']).default('info'), 'LOG_LEVEL'))
    .addOption(env(new Option(DEV_ALLOW_UNSIGNED_FLAG, 'DEVELOPMENT ONLY: accept unsigned bundles'), 'DEV_ALLOW_UNSIGNED_BUNDLES'));
  cmd.action(async (opts: AdapterFlags) => {
    applyConfigFile(cmd, opts);
    const o = cmd.opts<AdapterFlags>();
    setLogLevel(o.logLevel as LogLevel);
    const listen = parseHostPort(o.listen, '--listen');
    const admin = parseHostPort(o.adminListen, '--admin-listen');
    if (o.upstream === undefined) throw usageError('--upstream <url> is required (or TRUSTPLANE_UPSTREAM)');
    try {
      const u = new URL(o.upstream);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw usageError(`--upstream must be an http:// or https:// URL, got ${JSON.stringify(o.upstream)}`);
    }
    if (o.bundle === undefined || o.policyBundle === undefined) throw usageError('--bundle <file> and --policy-bundle <file> are required');
    const dev = o.devAllowUnsignedBundles === true;
    const trustKeys = parseSigningKeys(o.bundleSignaturePublicKey ?? [], '--bundle-signature-public-key');
    const policyKeys = o.policyBundleSignaturePublicKey === undefined ? trustKeys : parseSigningKeys(o.policyBundleSignaturePublicKey, '--policy-bundle-signature-public-key');
    if (!dev && (trustKeys.size === 0 || policyKeys.size === 0)) throw usageError(`--bundle-signature-public-key is required (or ${DEV_ALLOW_UNSIGNED_FLAG} for local development)`);
    const replicas = positiveInt(o.replicas, '--replicas');
    if (o.replay === 'memory' && replicas > 1) throw usageError(`--replay memory cannot protect ${replicas} replicas (each would keep its own replay state): use --replay redis://…`);
    if (o.routePolicyMode === 'route-id' && o.routeId === undefined) throw usageError('--route-policy-mode route-id needs --route-id');
    const freshness = positiveInt(o.policyBundleFreshnessWindow, '--policy-bundle-freshness-window');
    const maxBody = positiveInt(o.maxBodyBytes, '--max-body-bytes');
    const skew = positiveInt(o.skew, '--skew', true);
    const maxLifetime = positiveInt(o.maxLifetime, '--max-lifetime');
    if (dev) log('warn', `${DEV_ALLOW_UNSIGNED_FLAG} is set: unsigned bundles are accepted. Never use this in production.`);

    const watcher = new BundleWatcher({ trustMaterialFile: o.bundle, policyBundleFile: o.policyBundle, trustMaterialKeys: trustKeys, policyBundleKeys: policyKeys, allowUnsigned: dev });
    const rejected: string[] = [];
    watcher.on('rejected', (e: BundleRejectedEvent) => rejected.push(`${e.reason}: ${e.detail}`));
    if (!watcher.start()) {
      watcher.close();
      throw failure(`cannot load the bundle pair: ${rejected[0] ?? 'unknown error'}`, 'bundle_policy_missing');
    }
    let replayStore: ReplayStore;
    if (o.replay === 'memory') replayStore = new MemoryReplayStore();
    else {
      let redis: RedisReplayStore;
      try {
        redis = new RedisReplayStore(o.replay);
      } catch (err) {
        watcher.close();
        throw usageError(`--replay: ${err instanceof Error ? err.message : String(err)}`);
      }
      await redis.ready(3000).catch((err: unknown) => log('warn', 'replay store not ready yet; requests are denied (503) until it is', { error: err instanceof Error ? err.message : String(err) }));
      replayStore = redis;
    }
    const audit = createAuditSink(o.auditLog);
    const adapter = await startAdapter({
      listen,
      admin,
      upstream: o.upstream,
      policy: watcher,
      replayStore,
      audit,
      routeMode: o.routePolicyMode as 'request' | 'route-id',
      routeId: o.routeId,
      freshnessWindowSeconds: freshness,
      skewSeconds: skew,
      maxLifetimeSeconds: maxLifetime,
      maxBodyBytes: maxBody,
    }).catch((err: unknown) => {
      watcher.close();
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    const reloadAudit = (accepted: boolean, reason: string, detail: string, version?: number) =>
      audit.write(buildAuditEvent({ component: 'adapter', accepted, reason_code: reason, detail_reason: detail, occurredAtMs: Date.now(), policy_version: version }));
    watcher.on('loaded', (e: BundleLoadedEvent) => {
      adapter.metrics.bundleReloads.inc({ result: 'loaded' });
      log('info', 'bundle pair loaded', { policy_id: e.policyId, policy_version: e.policyVersion });
      reloadAudit(true, 'bundle_loaded', `policy ${e.policyId} version ${e.policyVersion} loaded`, e.policyVersion);
    });
    watcher.on('rejected', (e: BundleRejectedEvent) => {
      adapter.metrics.bundleReloads.inc({ result: 'rejected' });
      log('warn', 'bundle pair rejected; the last good pair keeps serving', { reason: e.reason, detail: e.detail, serving_policy_version: e.servingPolicyVersion });
      reloadAudit(false, e.reason, `bundle reload refused: ${e.detail}`, e.servingPolicyVersion);
    });
    const snap = watcher.current();
    log('info', 'adapter listening', { url: adapter.url, admin: adapter.adminUrl, upstream: o.upstream, replay: o.replay === 'memory' ? 'memory' : 'redis', policy_version: snap?.policy.policyVersion });
    io.stderr(`trustplane adapter: listening on ${adapter.url} → ${o.upstream} (admin ${adapter.adminUrl ?? 'off'})\n`);

    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log('info', 'shutting down', { signal });
        watcher.close();
        void adapter.close(10_000).then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', () => {
        log('info', 'SIGHUP: reloading bundles');
        watcher.reload();
      });
    });
  });
}
