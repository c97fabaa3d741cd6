/**
 * What `trustplane adapter` and `trustplane verifier` share: the verification options (bundles
 * and their signing keys, route mode, replay store, clock limits, audit, logging), their sources
 * (flag > TRUSTPLANE_* environment > JSON config file > default), validation with one clear line
 * per mistake (exit 2), and the running pieces built from them (the bundle watcher with its
 * audited reloads, the replay store, the audit sink, SIGHUP/SIGTERM handling).
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import {
  BundleFollower,
  BundleWatcher,
  MemoryReplayStore,
  parsePublicKey,
  buildAuditEvent,
  DEV_ALLOW_UNSIGNED_FLAG,
  type AuditComponent,
  type BundleLoadedEvent,
  type BundlePair,
  type BundleRejectedEvent,
  type CheckOutcome,
  type Ed25519PublicKey,
  type PolicyProvider,
  type ReplayStore,
} from '@trustplane/core';
// @trustplane/adapter (undici, ioredis, prom-client) loads only when a server command runs.
import type { AdapterMetrics, AuditSink, JwksTrustSource as JwksTrustSourceT, LogLevel, RedisReplayStore as RedisReplayStoreT } from '@trustplane/adapter';
import { usageError, failure } from '../output.js';
import { defaultKid } from '../files.js';

export interface VerifierFlags {
  config?: string;
  listen: string;
  adminListen: string;
  bundle?: string;
  policyBundle?: string;
  bundleSignaturePublicKey?: string[];
  policyBundleSignaturePublicKey?: string[];
  policyBundleFreshnessWindow: string;
  bundleStateFile?: string;
  routePolicyMode: string;
  routeId?: string;
  proofMode: string;
  replay: string;
  replayMaxEntries?: string;
  replayIssuerShare?: string;
  replicas: string;
  auditLog: string;
  auditBufferBytes: string;
  skew: string;
  maxLifetime: string;
  logLevel: string;
  devAllowUnsignedBundles?: boolean;
  allowJwksFetch?: boolean;
  shutdownDelay: string;
  maxConnections: string;
}

/** Default --max-connections (the adapter package's DEFAULT_MAX_CONNECTIONS; not imported: it loads undici). */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/** Live jtis the memory replay store holds by default (~87 B each: ~90 MB when full). */
export const DEFAULT_REPLAY_MAX_ENTRIES = 1_000_000;

/** Bytes of audit lines held while the audit sink does not take them (the adapter's default). */
export const DEFAULT_AUDIT_BUFFER_BYTES = 4 * 1024 * 1024;
/** Percent of the memory replay store one issuer may hold by default: the rest stays for the others. */
export const DEFAULT_REPLAY_ISSUER_SHARE = 50;

/** HOST:PORT (IPv6 as [::1]:PORT). */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65535) throw usageError(`${flag} must be HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function positiveInt(value: string, flag: string, allowZero = false): number {
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

/** Config-file keys (snake_case) of the shared options → commander option names. */
export const VERIFIER_CONFIG_KEYS: Readonly<Record<string, string>> = {
  listen: 'listen',
  admin_listen: 'adminListen',
  bundle: 'bundle',
  policy_bundle: 'policyBundle',
  // The repeatable key flags: the flag's own name, or the plural for a list (not both).
  bundle_signature_public_key: 'bundleSignaturePublicKey',
  bundle_signature_public_keys: 'bundleSignaturePublicKey',
  policy_bundle_signature_public_key: 'policyBundleSignaturePublicKey',
  policy_bundle_signature_public_keys: 'policyBundleSignaturePublicKey',
  policy_bundle_freshness_window: 'policyBundleFreshnessWindow',
  bundle_state_file: 'bundleStateFile',
  route_policy_mode: 'routePolicyMode',
  route_id: 'routeId',
  proof_mode: 'proofMode',
  replay: 'replay',
  replay_max_entries: 'replayMaxEntries',
  replay_issuer_share: 'replayIssuerShare',
  replicas: 'replicas',
  audit_log: 'auditLog',
  audit_buffer_bytes: 'auditBufferBytes',
  skew: 'skew',
  max_lifetime: 'maxLifetime',
  log_level: 'logLevel',
  dev_allow_unsigned_bundles: 'devAllowUnsignedBundles',
  allow_jwks_fetch: 'allowJwksFetch',
  shutdown_delay: 'shutdownDelay',
  max_connections: 'maxConnections',
};

/** Apply a JSON config file to every option still at its default (flags and env win). */
export function applyConfigFile(cmd: Command, configFile: string | undefined, keys: Readonly<Record<string, string>>): void {
  if (configFile === undefined) return;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (err) {
    throw usageError(`--config ${configFile}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw usageError(`--config ${configFile}: must be a JSON object`);
  const given = new Map<string, string>();
  for (const [key, value] of Object.entries(doc)) {
    const name = keys[key];
    if (name === undefined) throw usageError(`--config ${configFile}: unknown setting ${JSON.stringify(key)} (known: ${Object.keys(keys).join(', ')})`);
    const other = given.get(name);
    if (other !== undefined) throw usageError(`--config ${configFile}: ${other} and ${key} are the same setting: give one`);
    given.set(name, key);
    // The value's type follows the flag's kind, checked even when a flag or variable overrides it.
    const option = cmd.options.find((o) => o.attributeName() === name);
    const onOff = option !== undefined && !option.required && !option.optional;
    const list = option?.parseArg === collectKeys;
    let v: string | boolean | string[];
    if (onOff) {
      if (typeof value !== 'boolean') throw usageError(`--config ${configFile}: ${key} must be true or false, got ${JSON.stringify(value)}`);
      v = value;
    } else if (list) {
      if (typeof value === 'string') v = collectKeys(value, undefined);
      else if (Array.isArray(value) && value.every((x) => typeof x === 'string')) v = value.flatMap((x) => collectKeys(x, undefined));
      else throw usageError(`--config ${configFile}: ${key} must be a string or an array of strings`);
    } else {
      if (typeof value !== 'string' && typeof value !== 'number') throw usageError(`--config ${configFile}: ${key} must be a string or a number, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
      v = String(value);
    }
    const source = cmd.getOptionValueSource(name);
    if (source !== undefined && source !== 'default') continue;
    cmd.setOptionValueWithSource(name, v, 'config');
  }
}

const env = (o: Option, name: string) => o.env(`TRUSTPLANE_${name}`);
const collectKeys = (v: string, p: string[] | undefined) => [...(p ?? []), ...v.split(',').filter((x) => x !== '')];

/** The shared options, in --help order; `extra` adds the command's own before the shared tail. */
export function addVerifierOptions(cmd: Command, defaults: { listen: string; adminListen: string }, extra: (cmd: Command) => void): Command {
  cmd
    .addOption(env(new Option('--config <file>', 'JSON config file (keys: snake_case flag names)'), 'CONFIG'))
    .addOption(env(new Option('--listen <host:port>', 'address to serve on').default(defaults.listen), 'LISTEN'))
    .addOption(env(new Option('--admin-listen <host:port>', 'address of /healthz, /readyz, /metrics').default(defaults.adminListen), 'ADMIN_LISTEN'))
    .addOption(env(new Option('--max-connections <n>', 'open client connections at most (per process: each worker has its own); more are closed at once').default(String(DEFAULT_MAX_CONNECTIONS)), 'MAX_CONNECTIONS'));
  extra(cmd);
  return cmd
    .addOption(env(new Option('--bundle <file>', 'signed trust material (issuer keys)'), 'BUNDLE'))
    .addOption(env(new Option('--policy-bundle <file>', 'signed policy bundle (trustplane-bundle-v1)'), 'POLICY_BUNDLE'))
    .addOption(env(new Option('--bundle-signature-public-key <kid=b64url>', 'trusted signing key of the trust material (repeatable)').argParser(collectKeys), 'BUNDLE_SIGNATURE_PUBLIC_KEY'))
    .addOption(env(new Option('--policy-bundle-signature-public-key <kid=b64url>', 'trusted signing key of the policy bundle (repeatable; default: the trust material keys)').argParser(collectKeys), 'POLICY_BUNDLE_SIGNATURE_PUBLIC_KEY'))
    .addOption(env(new Option('--policy-bundle-freshness-window <seconds>', 'realtime routes need the bundle confirmed within this window').default('5'), 'POLICY_BUNDLE_FRESHNESS_WINDOW'))
    .addOption(env(new Option('--bundle-state-file <path>', 'keep the bundle high-water mark (policy_id lineage, policy_version) here, in a writable place that outlives restarts: an older pair or another lineage is then refused at start too (default: off, in memory only)'), 'BUNDLE_STATE_FILE'))
    .addOption(env(new Option('--route-policy-mode <mode>', 'request (method + path_template) or route-id').choices(['request', 'route-id']).default('request'), 'ROUTE_POLICY_MODE'))
    .addOption(env(new Option('--route-id <id>', 'the one route this process serves (route-id mode)'), 'ROUTE_ID'))
    .addOption(env(new Option('--proof-mode <mode>', 'request proof format').choices(['transcript-v1']).default('transcript-v1'), 'PROOF_MODE'))
    .addOption(env(new Option('--replay <store>', 'replay store: memory, or redis://, rediss://, redis+sentinel://, redis+cluster:// URL').default('memory'), 'REPLAY'))
    .addOption(env(new Option('--replay-max-entries <n>', `memory replay store: most live jtis held; when full, new jtis are refused with 503 replay_store_full (default: ${DEFAULT_REPLAY_MAX_ENTRIES})`), 'REPLAY_MAX_ENTRIES'))
    .addOption(env(new Option('--replay-issuer-share <percent>', `memory replay store: most of its capacity one issuer may hold, 1..100 (default: ${DEFAULT_REPLAY_ISSUER_SHARE}; 100 for a single issuer)`), 'REPLAY_ISSUER_SHARE'))
    .addOption(env(new Option('--replicas <n>', 'declared number of replicas (the memory replay store needs 1)').default('1'), 'REPLICAS'))
    .addOption(env(new Option('--audit-log <target>', 'audit events: stdout, off, or a file path').default('stdout'), 'AUDIT_LOG'))
    .addOption(env(new Option('--audit-buffer-bytes <n>', 'audit lines held while the audit sink does not take them (a pipe not read); past it events are dropped and counted').default(String(DEFAULT_AUDIT_BUFFER_BYTES)), 'AUDIT_BUFFER_BYTES'))
    .addOption(env(new Option('--skew <seconds>', 'allowed clock skew').default('30'), 'SKEW'))
    .addOption(env(new Option('--max-lifetime <seconds>', 'maximum passport lifetime').default('900'), 'MAX_LIFETIME'))
    .addOption(env(new Option('--log-level <level>', 'debug, info, warn, error').choices(['debug', 'info', 'warn', 'error']).default('info'), 'LOG_LEVEL'))
    .addOption(env(new Option('--shutdown-delay <seconds>', 'on SIGTERM/SIGINT, answer /readyz 503 and keep serving this long before draining (give load balancers time to stop sending; a second signal skips it)').default('0'), 'SHUTDOWN_DELAY'))
    .addOption(env(new Option('--allow-jwks-fetch', "also trust keys fetched from the trust material's jwks_uri entries (opt-in; pinned keys are the default)"), 'ALLOW_JWKS_FETCH'))
    .addOption(env(new Option(DEV_ALLOW_UNSIGNED_FLAG, 'DEVELOPMENT ONLY: accept unsigned bundles'), 'DEV_ALLOW_UNSIGNED_BUNDLES'));
}

/**
 * SIGTERM/SIGINT for a serving process: the first signal calls `drain()` (readiness off); `stop`
 * runs `delayMs` later (`--shutdown-delay`: load balancers stop sending meanwhile), or at once
 * when there is no delay or a second signal comes. Once `stop` runs the handlers are gone, so a
 * further signal gets Node's default (exit at once). Returns the removal of the handlers.
 */
export function onStopSignals(delayMs: number, log: (level: 'info', msg: string, fields: Record<string, unknown>) => void, drain: () => void, stop: (signal: string) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let draining = false;
  const remove = () => {
    clearTimeout(timer);
    process.removeListener('SIGTERM', onTerm).removeListener('SIGINT', onInt);
  };
  const now = (signal: string) => {
    remove();
    stop(signal);
  };
  const onSignal = (signal: string) => {
    if (draining) return now(signal);
    draining = true;
    drain();
    if (delayMs === 0) {
      log('info', 'shutting down', { signal });
      return now(signal);
    }
    log('info', 'shutting down: not ready; draining after the shutdown delay', { signal, delay_ms: delayMs });
    timer = setTimeout(() => now(signal), delayMs);
  };
  const onTerm = () => onSignal('SIGTERM');
  const onInt = () => onSignal('SIGINT');
  process.on('SIGTERM', onTerm).on('SIGINT', onInt);
  return remove;
}

/** Validated shared settings (pure: nothing started yet). */
export interface VerifierSettings {
  listen: { host: string; port: number };
  admin: { host: string; port: number };
  trustMaterialFile: string;
  policyBundleFile: string;
  trustKeys: Map<string, Ed25519PublicKey>;
  policyKeys: Map<string, Ed25519PublicKey>;
  /** The high-water mark file (`--bundle-state-file`), if any. */
  stateFile: string | undefined;
  dev: boolean;
  replay: string;
  /** Capacity of the memory replay store (live jtis). */
  replayMaxEntries: number;
  /** Fraction of that capacity one issuer may hold (0, 1]. */
  replayIssuerShare: number;
  routeMode: 'request' | 'route-id';
  routeId: string | undefined;
  freshnessWindowSeconds: number;
  skewSeconds: number;
  maxLifetimeSeconds: number;
  auditLog: string;
  auditBufferBytes: number;
  allowJwksFetch: boolean;
  logLevel: LogLevel;
  /** Seconds between a stop signal (readiness off) and the start of the drain. */
  shutdownDelaySeconds: number;
  /** Open client connections at most, per process. */
  maxConnections: number;
}

function boundedSeconds(value: string, flag: string, max: number): number {
  const n = positiveInt(value, flag, true);
  if (n > max) throw usageError(`${flag} must be at most ${max}, got ${n}`);
  return n;
}

export function verifierSettings(o: VerifierFlags): VerifierSettings {
  const listen = parseHostPort(o.listen, '--listen');
  const admin = parseHostPort(o.adminListen, '--admin-listen');
  if (o.bundle === undefined || o.policyBundle === undefined) throw usageError('--bundle <file> and --policy-bundle <file> are required');
  const dev = o.devAllowUnsignedBundles === true;
  const trustKeys = parseSigningKeys(o.bundleSignaturePublicKey ?? [], '--bundle-signature-public-key');
  const policyKeys = o.policyBundleSignaturePublicKey === undefined ? trustKeys : parseSigningKeys(o.policyBundleSignaturePublicKey, '--policy-bundle-signature-public-key');
  if (!dev && (trustKeys.size === 0 || policyKeys.size === 0)) throw usageError(`--bundle-signature-public-key is required (or ${DEV_ALLOW_UNSIGNED_FLAG} for local development)`);
  const replicas = positiveInt(o.replicas, '--replicas');
  if (o.replay === 'memory' && replicas > 1) throw usageError(`--replay memory cannot protect ${replicas} replicas (each would keep its own replay state): use --replay redis://…`);
  if (o.replayMaxEntries !== undefined && o.replay !== 'memory') throw usageError('--replay-max-entries applies to --replay memory only (size Redis with its own maxmemory and maxmemory-policy noeviction)');
  const replayMaxEntries = o.replayMaxEntries === undefined ? DEFAULT_REPLAY_MAX_ENTRIES : positiveInt(o.replayMaxEntries, '--replay-max-entries');
  if (o.replayIssuerShare !== undefined && o.replay !== 'memory') throw usageError('--replay-issuer-share applies to --replay memory only');
  const sharePercent = o.replayIssuerShare === undefined ? DEFAULT_REPLAY_ISSUER_SHARE : positiveInt(o.replayIssuerShare, '--replay-issuer-share');
  if (sharePercent > 100) throw usageError(`--replay-issuer-share must be a percentage 1..100, got ${sharePercent}`);
  if (o.routePolicyMode === 'route-id' && o.routeId === undefined) throw usageError('--route-policy-mode route-id needs --route-id');
  if (o.bundleStateFile === '') throw usageError('--bundle-state-file must be a path');
  return {
    listen,
    admin,
    trustMaterialFile: o.bundle,
    policyBundleFile: o.policyBundle,
    trustKeys,
    policyKeys,
    stateFile: o.bundleStateFile,
    dev,
    replay: o.replay,
    replayMaxEntries,
    replayIssuerShare: sharePercent / 100,
    routeMode: o.routePolicyMode as 'request' | 'route-id',
    routeId: o.routeId,
    freshnessWindowSeconds: positiveInt(o.policyBundleFreshnessWindow, '--policy-bundle-freshness-window'),
    skewSeconds: positiveInt(o.skew, '--skew', true),
    maxLifetimeSeconds: positiveInt(o.maxLifetime, '--max-lifetime'),
    auditLog: o.auditLog,
    auditBufferBytes: positiveInt(o.auditBufferBytes, '--audit-buffer-bytes'),
    allowJwksFetch: o.allowJwksFetch === true,
    logLevel: o.logLevel as LogLevel,
    shutdownDelaySeconds: boundedSeconds(o.shutdownDelay, '--shutdown-delay', 300),
    maxConnections: positiveInt(o.maxConnections, '--max-connections'),
  };
}

/** What serves the bundle pair in this process: its own file watcher, or (a worker) the primary's pairs. */
export interface ServedBundles {
  current: PolicyProvider['current'];
  currentPair(): BundlePair | undefined;
  on(event: 'loaded', listener: (e: BundleLoadedEvent) => void): unknown;
  on(event: 'rejected', listener: (e: BundleRejectedEvent) => void): unknown;
  reload(): CheckOutcome;
  close(): void;
}

/** Who this process is: `single` (reads the files), `primary` (reads them for its workers), `worker` (serves the primary's pairs). */
export type RuntimeRole = 'single' | 'primary' | 'worker';

export interface VerifierRuntime {
  watcher: ServedBundles;
  /** This process's watcher of the bundle files (not in a worker). */
  fileWatcher: BundleWatcher | undefined;
  /** What the verifier reads: the watcher, or the JWKS trust source in front of it. */
  policy: PolicyProvider;
  /** Extra readiness (JWKS issuers fetched; not while shutting down), for /readyz. */
  extraReadiness: () => string | undefined;
  replayStore: ReplayStore;
  audit: AuditSink;
  /** Count reloads in `metrics`, log and audit them as `component`. */
  observeReloads(metrics: AdapterMetrics, component: AuditComponent): void;
  /** Resolve on SIGTERM/SIGINT after `stop`; SIGHUP reloads the bundles. */
  /**
   * Resolve once `stop` has run after SIGTERM/SIGINT. With `delayMs`, readiness turns off at the
   * signal and `stop` runs that much later (a second signal runs it at once).
   */
  untilStopped(stop: () => Promise<void>, delayMs?: number): Promise<void>;
  /** Undo what was started (startup failed later). */
  abort(): void;
}

/** The one line saying that Redis does not persist consumed jtis (or that this cannot be told). */
export const REDIS_NO_PERSISTENCE = 'replay store: Redis has neither AOF (appendonly) nor RDB snapshots (save) enabled: a Redis restart forgets every consumed jti, and a passport still within its lifetime can then be replayed once more; set appendonly yes (docs/deployment.md, "Redis persistence")';
export const REDIS_PERSISTENCE_UNKNOWN = 'replay store: cannot check whether Redis persists consumed jtis (CONFIG GET refused or unanswered); make sure AOF (appendonly yes) or RDB snapshots are on (docs/deployment.md, "Redis persistence")';

/**
 * Load the bundle pair (refusing to start without a good one) and open the replay store and
 * audit sink. A `worker` reads no bundle file: it serves the pairs its primary accepted. With
 * Redis, `checkReplayPersistence` (default on; the adapter's workers leave it to the primary)
 * asks Redis once, when it is first ready, whether it persists its keys, and logs one line if it
 * does not or cannot be asked.
 */
export async function startVerifierRuntime(s: VerifierSettings, role: RuntimeRole = 'single', opts: { checkReplayPersistence?: boolean } = {}): Promise<VerifierRuntime> {
  const { JwksTrustSource, RedisReplayStore, createAuditSink, followClusterBundles, log, setLogLevel } = await import('@trustplane/adapter');
  setLogLevel(s.logLevel);
  if (s.dev) log('warn', `${DEV_ALLOW_UNSIGNED_FLAG} is set: unsigned bundles are accepted. Never use this in production.`);
  let watcher: ServedBundles;
  let fileWatcher: BundleWatcher | undefined;
  let unfollow: (() => void) | undefined;
  const keys = { trustMaterialKeys: s.trustKeys, policyBundleKeys: s.policyKeys, allowUnsigned: s.dev, trustMaterialFile: s.trustMaterialFile, policyBundleFile: s.policyBundleFile };
  if (role === 'worker') {
    const follower = new BundleFollower(keys);
    try {
      unfollow = await followClusterBundles(follower);
    } catch (err) {
      throw failure(`cannot load the bundle pair: ${err instanceof Error ? err.message : String(err)}`, 'bundle_policy_missing');
    }
    watcher = follower;
  } else {
    fileWatcher = new BundleWatcher({ ...keys, ...(s.stateFile !== undefined ? { stateFile: s.stateFile } : {}) });
    const rejected: string[] = [];
    const onStartReject = (e: BundleRejectedEvent) => rejected.push(`${e.reason}: ${e.detail}`);
    fileWatcher.on('rejected', onStartReject);
    if (!fileWatcher.start()) {
      fileWatcher.close();
      throw failure(`cannot load the bundle pair: ${rejected[0] ?? 'unknown error'}`, 'bundle_policy_missing');
    }
    fileWatcher.off('rejected', onStartReject);
    const mark = fileWatcher.currentMark();
    if (s.stateFile !== undefined && mark !== undefined) log('info', 'bundle high-water mark', { state_file: s.stateFile, policy_id: mark.policyId, policy_version: mark.policyVersion });
    watcher = fileWatcher;
  }
  let replayStore: ReplayStore;
  if (s.replay === 'memory') replayStore = new MemoryReplayStore({ maxEntries: s.replayMaxEntries, issuerShare: s.replayIssuerShare });
  else {
    let redis: RedisReplayStoreT;
    try {
      redis = new RedisReplayStore(s.replay);
    } catch (err) {
      watcher.close();
      throw usageError(`--replay: ${err instanceof Error ? err.message : String(err)}`);
    }
    const ready = await redis.ready(3000).then(
      () => true,
      (err: unknown) => {
        log('warn', 'replay store not ready yet; requests are denied (503) until it is', { error: err instanceof Error ? err.message : String(err) });
        return false;
      },
    );
    if (opts.checkReplayPersistence ?? true) {
      const check = async () => {
        const p = await redis.checkPersistence();
        if (p.state === 'off') log('warn', REDIS_NO_PERSISTENCE, { nodes: p.nodes });
        else if (p.state === 'unknown') log('info', REDIS_PERSISTENCE_UNKNOWN, { error: p.error });
      };
      if (ready) await check();
      else redis.client.once('ready', () => void check());
    }
    replayStore = redis;
  }
  let audit: AuditSink;
  try {
    audit = createAuditSink(s.auditLog, { maxBufferBytes: s.auditBufferBytes });
  } catch (err) {
    watcher.close();
    void replayStore.close?.();
    throw failure(`${err instanceof Error ? err.message : String(err)}`);
  }
  let jwks: JwksTrustSourceT | undefined;
  // The primary verifies nothing: its workers fetch for themselves.
  if (s.allowJwksFetch && role !== 'primary') {
    jwks = new JwksTrustSource({
      bundles: watcher,
      onEvent: (e) => log(e.type === 'fetched' ? 'info' : 'warn', `jwks: ${e.type.replace('_', ' ')}`, { issuer: e.issuer, jwks_uri: e.jwksUri, detail: e.detail }),
    });
    // Startup waits a little for the first fetch; readiness reports what is still missing.
    await Promise.race([jwks.start(), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
  // Said once everything else is valid, so that a configuration mistake stays one line.
  if (role !== 'worker' && s.stateFile === undefined) {
    log('warn', 'bundle rollback protection across restarts is off: give --bundle-state-file PATH (a writable file that outlives restarts) so that a restart refuses an older signed pair or another policy_id; the high-water mark is kept in memory only');
  }
  let draining = false;
  return {
    watcher,
    fileWatcher,
    policy: jwks ?? watcher,
    extraReadiness: () => (draining ? 'shutting down' : jwks?.readiness()),
    replayStore,
    audit,
    observeReloads(metrics, component) {
      const reloadAudit = (accepted: boolean, reason: string, detail: string, version?: number) =>
        audit.write(buildAuditEvent({ component, accepted, reason_code: reason, detail_reason: detail, occurredAtMs: Date.now(), policy_version: version }));
      watcher.on('loaded', (e: BundleLoadedEvent) => {
        metrics.bundleReloads.inc({ result: 'loaded' });
        log('info', 'bundle pair loaded', { policy_id: e.policyId, policy_version: e.policyVersion });
        reloadAudit(true, 'bundle_loaded', `policy ${e.policyId} version ${e.policyVersion} loaded`, e.policyVersion);
      });
      watcher.on('rejected', (e: BundleRejectedEvent) => {
        metrics.bundleReloads.inc({ result: 'rejected' });
        log('warn', 'bundle pair rejected; the last good pair keeps serving', { reason: e.reason, detail: e.detail, serving_policy_version: e.servingPolicyVersion });
        reloadAudit(false, e.reason, `bundle reload refused: ${e.detail}`, e.servingPolicyVersion);
      });
    },
    untilStopped(stop, delayMs = 0) {
      return new Promise<void>((resolve) => {
        onStopSignals(
          delayMs,
          log,
          () => (draining = true),
          () => {
            watcher.close();
            unfollow?.();
            jwks?.close();
            void stop().then(resolve);
          },
        );
        process.on('SIGHUP', () => {
          // A worker's pairs come from its primary, which reloads on its own SIGHUP.
          if (role === 'worker') return;
          log('info', 'SIGHUP: reloading bundles');
          watcher.reload();
        });
      });
    },
    abort() {
      watcher.close();
      unfollow?.();
      jwks?.close();
      void replayStore.close?.();
      void audit.close();
    },
  };
}
