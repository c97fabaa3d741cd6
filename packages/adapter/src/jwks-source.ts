/**
 * Trusting an issuer by `jwks_uri` (opt-in; pinned keys in the trust material are the default).
 *
 * A `PolicyProvider` in front of the bundle watcher: for every issuer of the loaded trust
 * material that has a `jwks_uri`, the issuer's JWKS is fetched (https, or http on loopback only;
 * no redirects; a 64 KiB cap; a timeout; strict UTF-8 and JSON; RFC 8037 OKP Ed25519 keys
 * only, private members refused) and its keys are added to that issuer's pinned keys. The verifier reads a
 * policy compiled from the merged trust material — recompiled only when the bundle pair or a key
 * set changes, never per request.
 *
 * Caching: a key set is refreshed when its Cache-Control max-age (bounded to 60 s .. 1 h, default
 * 300 s) runs out; a passport with an unknown kid triggers a refresh at most once per 30 s per
 * issuer (the request itself is still denied `unknown_issuer_key`; verification never waits on a
 * fetch). When the issuer is down or answers garbage, the last good key set keeps serving — for
 * at most `maxStaleSeconds` (default 24 h) after its last successful fetch: then its keys are
 * dropped (pinned keys still verify), so an issuer's withdrawal of a key cannot be held off
 * indefinitely by keeping its endpoint unreachable. Readiness fails while an issuer has never
 * been fetched successfully. A fetched kid that an
 * issuer's pinned keys (or another issuer) already use is refused, so fetching can add keys but
 * never replace or move a pinned one.
 */
import { request } from 'undici';
import {
  FormatError,
  compilePolicy,
  isJsonObject,
  parseJsonBytes,
  systemClock,
  trustUrlProblem,
  trustKeysFromJwks,
  type BundlePair,
  type Clock,
  type CompiledPolicy,
  type Ed25519Backend,
  type PolicySnapshot,
  type PolicyProvider,
  type TrustKey,
  type TrustMaterial,
} from '@trustplane/core';

export interface BundlePairSource {
  current(): PolicySnapshot | undefined;
  currentPair(): BundlePair | undefined;
}

export interface JwksTrustSourceEvent {
  /**
   * `compile_failed`: the merged policy did not compile; the pinned-only policy serves.
   * `keys_expired`: no successful fetch for longer than `maxStaleSeconds`; the issuer's fetched
   * keys were dropped until the next successful fetch.
   */
  type: 'fetched' | 'fetch_failed' | 'key_refused' | 'compile_failed' | 'keys_expired';
  issuer: string;
  jwksUri: string;
  detail: string;
  kids?: string[];
}

export interface JwksTrustSourceOptions {
  bundles: BundlePairSource;
  clock?: Clock;
  /** Whole-fetch timeout (default 5000 ms). */
  fetchTimeoutMs?: number;
  /** Largest JWKS accepted (default 64 KiB). */
  maxBytes?: number;
  /** Cache-Control max-age is clamped to [minTtlSeconds, maxTtlSeconds] (default 60 s .. 1 h). */
  minTtlSeconds?: number;
  maxTtlSeconds?: number;
  /** Cache lifetime when the answer has no max-age (default 300 s). */
  defaultTtlSeconds?: number;
  /** At most one refresh per issuer per this many seconds on unknown kids and after failures (default 30). */
  refetchIntervalSeconds?: number;
  /**
   * The last good key set serves at most this long after its last successful fetch while
   * fetches fail (default 86400 s); then the issuer's fetched keys are dropped.
   */
  maxStaleSeconds?: number;
  /** Background check for expired key sets (default 5000 ms; 0 = only on demand). */
  pollMs?: number;
  onEvent?: (e: JwksTrustSourceEvent) => void;
  /** The Ed25519 backend keys are imported with (default: core's). */
  backend?: Ed25519Backend;
}

/** One jwks issuer's state, for admin endpoints and metrics. */
export interface JwksIssuerStatus {
  readonly issuer: string;
  readonly jwksUri: string;
  /** Kids of the last good key set; undefined until a fetch succeeded. */
  readonly kids: readonly string[] | undefined;
  readonly fetchedAtMs: number | undefined;
  /** When the key set is next refreshed (cache expiry, or retry after a failure). */
  readonly refreshAtMs: number;
  readonly lastError: string | undefined;
}

interface KeySet {
  readonly issuer: string;
  readonly uri: string;
  keys: TrustKey[] | undefined;
  fetchedAtMs: number | undefined;
  expiresAtMs: number;
  lastAttemptMs: number;
  inflight: Promise<void> | undefined;
  lastError: string | undefined;
}

/** Why a jwks_uri may not be fetched, or undefined (https, or http on loopback; no credentials). */
export function jwksUriProblem(uri: string): string | undefined {
  return trustUrlProblem(uri);
}

function maxAgeOf(cacheControl: string | string[] | undefined): number | undefined {
  const v = Array.isArray(cacheControl) ? cacheControl.join(',') : cacheControl;
  const m = v === undefined ? null : /(?:^|,)\s*max-age\s*=\s*(\d{1,9})\s*(?:,|$)/i.exec(v);
  return m === null ? undefined : Number(m[1]);
}

export class JwksTrustSource implements PolicyProvider {
  private readonly opts: JwksTrustSourceOptions;
  private readonly clock: Clock;
  private readonly sets = new Map<string, KeySet>();
  private version = 0;
  private compiled: { pair: BundlePair; version: number; policy: CompiledPolicy } | undefined;
  /** The bundle pair the key sets were last aligned with. */
  private syncedPair: BundlePair | undefined;
  /**
   * Which issuer holds each fetched kid: the one whose fetch brought it first, for as long as
   * its key set keeps listing it. Without this, two issuers' sets listing one kid would be
   * resolved by the order of the issuers in the trust material, and one issuer's JWKS could take
   * over a kid another issuer's passports are signed under.
   */
  private readonly kidOwners = new Map<string, string>();

  /**
   * Record a fetched set's kids: claim the unclaimed ones; a kid it no longer lists passes to
   * the first other issuer (trust-material order) whose set lists it, if any.
   */
  private claimKids(issuer: string, kids: readonly string[]): void {
    for (const [kid, owner] of this.kidOwners) {
      if (owner !== issuer || kids.includes(kid)) continue;
      const next = [...this.sets.values()].find((s) => s.issuer !== issuer && s.keys?.some((k) => k.kid === kid) === true);
      if (next === undefined) this.kidOwners.delete(kid);
      else this.kidOwners.set(kid, next.issuer);
    }
    for (const kid of kids) if (!this.kidOwners.has(kid)) this.kidOwners.set(kid, issuer);
  }
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: JwksTrustSourceOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    const pair = opts.bundles.currentPair();
    if (pair !== undefined) this.sync(pair);
    const poll = opts.pollMs ?? 5000;
    if (poll > 0) {
      this.timer = setInterval(() => void this.refreshDue(), poll);
      this.timer.unref();
    }
  }

  /** Fetch every key set now (startup); resolves when all attempts ended. */
  async start(): Promise<void> {
    this.syncIfChanged();
    await Promise.all([...this.sets.values()].map((s) => this.refresh(s)));
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  current(): PolicySnapshot | undefined {
    const snap = this.opts.bundles.current();
    const pair = this.opts.bundles.currentPair();
    if (snap === undefined || pair === undefined) return snap;
    if (this.syncedPair !== pair) this.sync(pair);
    if (this.sets.size === 0) return snap;
    if (this.compiled === undefined || this.compiled.pair !== pair || this.compiled.version !== this.version) {
      this.compiled = { pair, version: this.version, policy: this.compile(pair) ?? pair.policy };
    }
    // The watcher's snapshot holds the pair's own compiled policy: use it when nothing was added.
    return this.compiled.policy === pair.policy ? snap : { policy: this.compiled.policy, confirmedAtMs: snap.confirmedAtMs };
  }

  onUnknownKid(_kid: string): void {
    const now = this.clock.now();
    const interval = (this.opts.refetchIntervalSeconds ?? 30) * 1000;
    for (const s of this.sets.values()) if (now - s.lastAttemptMs >= interval) void this.refresh(s);
  }

  /** Undefined when every jwks issuer has a key set; else what is missing (for /readyz). */
  readiness(): string | undefined {
    this.syncIfChanged();
    // Never fetched: a set whose keys were dropped as stale once had some, and pinned keys serve.
    const missing = [...this.sets.values()].filter((s) => s.fetchedAtMs === undefined);
    if (missing.length === 0) return undefined;
    return `no JWKS fetched yet for ${missing.map((s) => `${s.issuer} (${s.lastError ?? 'pending'})`).join(', ')}`;
  }

  /** Every jwks issuer's state. */
  status(): JwksIssuerStatus[] {
    this.syncIfChanged();
    return [...this.sets.values()].map((s) => ({ issuer: s.issuer, jwksUri: s.uri, kids: s.keys?.map((k) => k.kid), fetchedAtMs: s.fetchedAtMs, refreshAtMs: s.expiresAtMs, lastError: s.lastError }));
  }

  private syncIfChanged(): void {
    const pair = this.opts.bundles.currentPair();
    if (pair !== undefined && this.syncedPair !== pair) this.sync(pair);
  }

  /** Align the key sets with the issuers of the trust material that have a jwks_uri. */
  private sync(pair: BundlePair): void {
    this.syncedPair = pair;
    const trust: TrustMaterial = pair.trust;
    const wanted = new Map<string, string>();
    for (const iss of trust.issuers) if (typeof iss.jwks_uri === 'string' && iss.jwks_uri !== '') wanted.set(iss.issuer, iss.jwks_uri);
    for (const [issuer, s] of this.sets) {
      if (wanted.get(issuer) !== s.uri) {
        this.sets.delete(issuer);
        this.claimKids(issuer, []);
        this.version++;
      }
    }
    for (const [issuer, uri] of wanted) {
      if (this.sets.has(issuer)) continue;
      const s: KeySet = { issuer, uri, keys: undefined, fetchedAtMs: undefined, expiresAtMs: 0, lastAttemptMs: -Infinity, inflight: undefined, lastError: undefined };
      this.sets.set(issuer, s);
      void this.refresh(s);
    }
  }

  /** Refresh the key sets whose cache ran out (the poll timer does this); resolves when done. */
  async refreshDue(): Promise<void> {
    this.syncIfChanged();
    const now = this.clock.now();
    const interval = (this.opts.refetchIntervalSeconds ?? 30) * 1000;
    const due = [...this.sets.values()].filter((s) => (s.keys === undefined ? now - s.lastAttemptMs >= interval : now >= s.expiresAtMs));
    await Promise.all(due.map((s) => this.refresh(s)));
  }

  /** Resolves when no fetch is in flight (tests, orderly shutdown). */
  async idle(): Promise<void> {
    await Promise.all([...this.sets.values()].flatMap((s) => (s.inflight === undefined ? [] : [s.inflight])));
  }

  private refresh(s: KeySet): Promise<void> {
    s.inflight ??= this.fetchInto(s).finally(() => {
      s.inflight = undefined;
    });
    return s.inflight;
  }

  private event(e: JwksTrustSourceEvent): void {
    try {
      this.opts.onEvent?.(e);
    } catch {
      /* an observer's failure is not ours */
    }
  }

  private async fetchInto(s: KeySet): Promise<void> {
    s.lastAttemptMs = this.clock.now();
    try {
      const problem = jwksUriProblem(s.uri);
      if (problem !== undefined) throw new FormatError('jwks_uri_refused', `jwks_uri ${s.uri}: ${problem}`);
      const max = this.opts.maxBytes ?? 64 * 1024;
      const timeout = this.opts.fetchTimeoutMs ?? 5000;
      const res = await request(s.uri, { method: 'GET', headers: { accept: 'application/json' }, headersTimeout: timeout, bodyTimeout: timeout, signal: AbortSignal.timeout(timeout) });
      if (res.statusCode !== 200) {
        await res.body.dump().catch(() => undefined);
        throw new FormatError('jwks_fetch_failed', `HTTP ${res.statusCode}`);
      }
      const announced = Number(res.headers['content-length']);
      if (Number.isFinite(announced) && announced > max) {
        res.body.destroy();
        throw new FormatError('jwks_too_large', `the JWKS exceeds ${max} bytes`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > max) {
          res.body.destroy();
          throw new FormatError('jwks_too_large', `the JWKS exceeds ${max} bytes`);
        }
        chunks.push(chunk);
      }
      const doc = parseJsonBytes(Buffer.concat(chunks, size), max, 'the JWKS');
      if (!isJsonObject(doc)) throw new FormatError('jwks_invalid', 'the JWKS is not a JSON object');
      const { keys } = trustKeysFromJwks(doc, ...(this.opts.backend === undefined ? [] : [this.opts.backend]));
      const ttl = Math.min(this.opts.maxTtlSeconds ?? 3600, Math.max(this.opts.minTtlSeconds ?? 60, maxAgeOf(res.headers['cache-control']) ?? this.opts.defaultTtlSeconds ?? 300));
      s.fetchedAtMs = this.clock.now();
      s.expiresAtMs = s.fetchedAtMs + ttl * 1000;
      s.lastError = undefined;
      const before = JSON.stringify(s.keys ?? null);
      s.keys = keys;
      this.claimKids(s.issuer, keys.map((k) => k.kid));
      if (JSON.stringify(keys) !== before) this.version++;
      this.event({ type: 'fetched', issuer: s.issuer, jwksUri: s.uri, detail: `${keys.length} key(s), cached ${ttl} s`, kids: keys.map((k) => k.kid) });
    } catch (err) {
      s.lastError = err instanceof Error ? err.message.slice(0, 200) : String(err);
      // Keep the last good set (within maxStaleSeconds); try again after the refetch interval.
      const now = this.clock.now();
      s.expiresAtMs = now + (this.opts.refetchIntervalSeconds ?? 30) * 1000;
      const maxStaleMs = (this.opts.maxStaleSeconds ?? 86_400) * 1000;
      if (s.keys !== undefined && s.fetchedAtMs !== undefined && now - s.fetchedAtMs > maxStaleMs) {
        s.keys = undefined;
        this.claimKids(s.issuer, []);
        this.version++;
        this.event({ type: 'keys_expired', issuer: s.issuer, jwksUri: s.uri, detail: `${s.lastError}; no successful fetch for ${Math.round((now - s.fetchedAtMs) / 1000)} s: its fetched keys are dropped until the next successful fetch (pinned keys still verify)` });
        return;
      }
      this.event({ type: 'fetch_failed', issuer: s.issuer, jwksUri: s.uri, detail: `${s.lastError}; ${s.keys !== undefined ? 'keeping the last good key set' : s.fetchedAtMs === undefined ? 'no key set yet' : 'fetched keys dropped as stale'}` });
    }
  }

  /** The pair's policy with the fetched keys added; undefined (pinned only) if nothing was added or it fails. */
  private compile(pair: BundlePair): CompiledPolicy | undefined {
    const pinned = new Set(pair.trust.issuers.flatMap((i) => i.keys.map((k) => k.kid)));
    const issuers = pair.trust.issuers.map((iss) => {
      const set = this.sets.get(iss.issuer);
      if (set?.keys === undefined) return iss;
      const extra: TrustKey[] = [];
      for (const k of set.keys) {
        if (pinned.has(k.kid) || this.kidOwners.get(k.kid) !== iss.issuer) {
          if (!iss.keys.some((p) => p.kid === k.kid && p.public_key_b64url === k.public_key_b64url)) {
            this.event({ type: 'key_refused', issuer: iss.issuer, jwksUri: set.uri, detail: `fetched kid ${k.kid} is already used by a pinned or another issuer's key; ignored` });
          }
          continue;
        }
        extra.push(k);
      }
      return extra.length === 0 ? iss : { ...iss, keys: [...iss.keys, ...extra] };
    });
    if (issuers.every((iss, i) => iss === pair.trust.issuers[i])) return undefined;
    try {
      return compilePolicy({ ...pair.trust, issuers }, pair.bundle, this.opts.backend === undefined ? {} : { backend: this.opts.backend });
    } catch (err) {
      // Fetched keys are checked before they get here; if the merge still fails, pinned keys serve.
      this.event({ type: 'compile_failed', issuer: '', jwksUri: '', detail: `${err instanceof Error ? err.message.slice(0, 200) : String(err)}; serving pinned keys only` });
      return undefined;
    }
  }
}
