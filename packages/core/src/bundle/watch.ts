/**
 * Hot reload (SPEC §4): a `PolicyProvider` backed by the two files on disk. It loads the pair
 * at start, watches the files' DIRECTORIES (Kubernetes ConfigMap updates swap a symlink, which
 * a watch on the file itself would miss) and polls them (default every second), and reloads on
 * any change and on `reload()` (SIGHUP). A directory event counts only when it names one of the
 * two files or a `..`-prefixed entry (the ConfigMap writer's `..data` symlink and timestamped
 * directories): other files in the same directory — an audit log appended on every request,
 * say — do not make the watcher stat the pair again. A new pair is read whole, signature-checked,
 * validated and compiled, then swapped in as one snapshot. A bad, truncated, unsigned,
 * mismatched or rolled-back pair (a lower `policy_version`, the same version with other content,
 * or another `policy_id` lineage) is refused: the last good pair keeps serving, and a `rejected`
 * event says why.
 *
 * The high-water mark (state.ts): with `stateFile`, the lineage and highest version accepted are
 * kept on disk and checked at start too, so a restart cannot bring back an older signed pair
 * (one that still trusts a removed or revoked key) nor switch lineage. The mark is written
 * BEFORE a new pair is swapped in; a pair whose mark cannot be written is refused.
 *
 * `BundleFollower` is the same provider fed with pair bytes by someone else (an adapter worker
 * serves exactly the pairs its cluster primary's watcher accepted: the primary decides).
 *
 * Freshness: `confirmedAtMs` is the last time the watcher confirmed that the files on disk
 * still hold the serving pair — at load, and at every check that finds them unchanged. While
 * the files hold something that was refused, it stops advancing, so `realtime` and `bounded`
 * routes go stale and fail closed (SPEC §4).
 */
import { EventEmitter } from 'node:events';
import { statSync, watch, type FSWatcher } from 'node:fs';
import * as path from 'node:path';
import { FormatError } from '../errors.js';
import { sha256Hex } from '../encoding.js';
import { systemClock, type Clock } from '../clock.js';
import type { PolicyProvider, PolicySnapshot } from '../verifier.js';
import { assertSigningKeysConfigured, parseBundlePair, readBundleFile, MAX_BUNDLE_BYTES, type BundlePair, type ParseBundlePairOptions } from './load.js';
import { checkAgainstMark, readBundleState, writeBundleState, type BundleMark } from './state.js';

export interface BundleWatcherOptions extends Omit<ParseBundlePairOptions, 'trustMaterialFile' | 'policyBundleFile'> {
  trustMaterialFile: string;
  policyBundleFile: string;
  /** Stat poll interval in ms (default 1000); each poll that finds the files unchanged confirms freshness. 0 disables the timer (call `check()` yourself). */
  pollIntervalMs?: number;
  /** Watch the directories with fs.watch (default true); the poll runs regardless. */
  watchDirectories?: boolean;
  /** Coalesces a burst of fs.watch events (default 25 ms). */
  debounceMs?: number;
  clock?: Clock;
  /**
   * The high-water mark file (`--bundle-state-file`): read at `start()`, written before each
   * newer pair is swapped in. Without it the mark lives in memory only (lost on restart).
   */
  stateFile?: string;
}

/** The raw bytes of the serving pair and when they were last confirmed (what a primary hands its workers). */
export interface BundlePairBytes {
  readonly trust: Buffer;
  readonly bundle: Buffer;
  readonly confirmedAtMs: number;
}

export interface BundleConfirmedEvent {
  readonly policyVersion: number;
  readonly contentSha256: string;
  readonly atMs: number;
}

export interface BundleLoadedEvent {
  readonly policyId: string;
  readonly policyVersion: number;
  readonly previousPolicyVersion: number | undefined;
  readonly trustMaterialSigner: string | undefined;
  readonly policyBundleSigner: string | undefined;
  readonly atMs: number;
}

export interface BundleRejectedEvent {
  /** A stable code: invalid_json, invalid_bundle, too_large, read_failed, unsigned_bundle, unknown_signing_key, invalid_bundle_signature, unsupported_signature_format, bundle_pair_mismatch, bundle_rollback, bundle_version_conflict, bundle_lineage_mismatch, bundle_state_invalid, bundle_state_write_failed (internal_error for the unexpected). */
  readonly reason: string;
  readonly detail: string;
  /** The version still serving, if any. */
  readonly servingPolicyVersion: number | undefined;
  readonly atMs: number;
}

export type CheckOutcome = 'loaded' | 'unchanged' | 'rejected';

function statKey(file: string): string {
  try {
    const s = statSync(file);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch (err) {
    return `error:${(err as { code?: unknown } | null)?.code as string}`;
  }
}

/**
 * Whether a directory event may concern the bundle files: it names one of them, or a
 * `..`-prefixed entry (Kubernetes' atomic writer swaps `..data` and its timestamped
 * directories), or names nothing (some platforms do not say).
 */
export function concernsBundle(name: string | Buffer | null | undefined, names: ReadonlySet<string>): boolean {
  if (name === null || name === undefined) return true;
  const n = typeof name === 'string' ? name : name.toString('utf8');
  return names.has(n) || n.startsWith('..');
}

function loadedEvent(pair: BundlePair, prev: BundlePair | undefined, now: number): BundleLoadedEvent {
  return {
    policyId: pair.policyId,
    policyVersion: pair.policyVersion,
    previousPolicyVersion: prev?.policyVersion,
    trustMaterialSigner: pair.trustSignature.status === 'valid' ? pair.trustSignature.kid : undefined,
    policyBundleSigner: pair.bundleSignature.status === 'valid' ? pair.bundleSignature.kid : undefined,
    atMs: now,
  };
}

function codeAndDetail(err: unknown): { reason: string; detail: string } {
  if (!(err instanceof FormatError)) return { reason: 'internal_error', detail: err instanceof Error ? err.message : String(err) };
  return { reason: err.code, detail: err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message };
}

export class BundleWatcher extends EventEmitter implements PolicyProvider {
  private readonly opts: BundleWatcherOptions;
  private readonly clock: Clock;
  private pair: BundlePair | undefined;
  private pairBytes: { trust: Buffer; bundle: Buffer } | undefined;
  private snapshot: PolicySnapshot | undefined;
  /** The high-water mark: the state file's at start, then the serving pair's. */
  private mark: BundleMark | undefined;
  /** Set when the state file could not be read at start: every pair is refused with it. */
  private stateProblem: { reason: string; detail: string } | undefined;
  /** Stat of both files at the last full read, and whether that read gave the serving pair. */
  private lastStat: string | undefined;
  private lastGood = false;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly watchers: FSWatcher[] = [];
  private closed = false;
  private started = false;

  constructor(opts: BundleWatcherOptions) {
    super();
    assertSigningKeysConfigured(opts);
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
  }

  override on(event: 'loaded', listener: (e: BundleLoadedEvent) => void): this;
  override on(event: 'rejected', listener: (e: BundleRejectedEvent) => void): this;
  override on(event: 'confirmed', listener: (e: BundleConfirmedEvent) => void): this;
  override on(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  /** The high-water mark in force (lineage, version, content), if any. */
  currentMark(): BundleMark | undefined {
    return this.mark;
  }

  /** The serving pair's file bytes and its last confirmation (for cluster workers). */
  currentBytes(): BundlePairBytes | undefined {
    if (this.pairBytes === undefined || this.snapshot === undefined) return undefined;
    return { trust: this.pairBytes.trust, bundle: this.pairBytes.bundle, confirmedAtMs: this.snapshot.confirmedAtMs };
  }

  /** The snapshot the verifier reads, once per request. */
  current(): PolicySnapshot | undefined {
    return this.snapshot;
  }

  /** The serving pair (documents, signers, versions), if any. */
  currentPair(): BundlePair | undefined {
    return this.pair;
  }

  /** Load the pair and start watching and polling. Returns whether a good pair is serving. */
  start(): boolean {
    if (this.closed) throw new TypeError('BundleWatcher is closed');
    if (this.started) throw new TypeError('BundleWatcher is already started');
    this.started = true;
    if (this.opts.stateFile !== undefined) {
      try {
        const state = readBundleState(this.opts.stateFile);
        if (state !== undefined) this.mark = { policyId: state.policyId, policyVersion: state.policyVersion, contentSha256: state.contentSha256 };
      } catch (err) {
        // Unreadable or not a mark: refuse every pair (a reset is deleting the file, on purpose).
        this.stateProblem = codeAndDetail(err);
      }
    }
    this.check(true);
    if (this.opts.watchDirectories !== false) {
      // Each watched directory, with the names in it that matter.
      const dirs = new Map<string, Set<string>>();
      for (const file of [this.opts.trustMaterialFile, this.opts.policyBundleFile]) {
        const abs = path.resolve(file);
        const names = dirs.get(path.dirname(abs)) ?? new Set<string>();
        names.add(path.basename(abs));
        dirs.set(path.dirname(abs), names);
      }
      for (const [dir, names] of dirs) {
        try {
          const w = watch(dir, { persistent: false }, (_event, name) => {
            if (concernsBundle(name, names)) this.schedule();
          });
          // Watching is an accelerator; the poll is the guarantee. A watch error ends the watch.
          w.on('error', () => w.close());
          this.watchers.push(w);
        } catch {
          // No inotify (limits, some file systems): polling alone.
        }
      }
    }
    const interval = this.opts.pollIntervalMs ?? 1000;
    if (interval > 0) {
      this.timer = setInterval(() => this.check(false), interval);
      this.timer.unref();
    }
    return this.snapshot !== undefined;
  }

  /** Re-read both files now, whatever their stat says (SIGHUP). */
  reload(): CheckOutcome {
    return this.check(true);
  }

  /** Stop watching and polling. The last snapshot stays readable. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
  }

  private schedule(): void {
    if (this.closed || this.debounce !== undefined) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (!this.closed) this.check(false);
    }, this.opts.debounceMs ?? 25);
    this.debounce.unref();
  }

  private confirm(now: number): void {
    if (this.pair === undefined) return;
    this.snapshot = { policy: this.pair.policy, confirmedAtMs: now };
    const event: BundleConfirmedEvent = { policyVersion: this.pair.policyVersion, contentSha256: this.pair.contentSha256, atMs: now };
    this.emit('confirmed', event);
  }

  /**
   * One check (what the poll runs): if neither file's stat changed since the last read, the
   * serving pair is confirmed current; otherwise both are read, and a new valid pair swapped in.
   */
  check(force = false): CheckOutcome {
    const now = this.clock.now();
    const stat = `${statKey(this.opts.trustMaterialFile)}|${statKey(this.opts.policyBundleFile)}`;
    if (!force && stat === this.lastStat) {
      if (this.lastGood) {
        this.confirm(now);
        return 'unchanged';
      }
      return 'rejected'; // already reported for these files
    }
    this.lastStat = stat;
    const o = this.opts;
    let pair: BundlePair;
    let trustBytes: Buffer;
    let bundleBytes: Buffer;
    try {
      const max = o.maxBytes ?? MAX_BUNDLE_BYTES;
      trustBytes = readBundleFile(o.trustMaterialFile, max);
      bundleBytes = readBundleFile(o.policyBundleFile, max);
      const bytes = sha256Hex(`${sha256Hex(trustBytes)}\n${sha256Hex(bundleBytes)}`);
      if (this.pair !== undefined && bytes === this.pair.bytesSha256) {
        this.lastGood = true;
        this.confirm(now);
        return 'unchanged';
      }
      pair = parseBundlePair(trustBytes, bundleBytes, { ...o, trustMaterialFile: o.trustMaterialFile, policyBundleFile: o.policyBundleFile });
    } catch (err) {
      // Never let a timer callback throw: anything unexpected is a refusal too (fail closed).
      const e = codeAndDetail(err);
      return this.reject(e.reason, e.detail, now);
    }
    if (this.stateProblem !== undefined) return this.reject(this.stateProblem.reason, this.stateProblem.detail, now);
    const prev = this.pair;
    const where = prev !== undefined ? 'the serving pair' : `recorded in ${this.opts.stateFile ?? 'memory'}`;
    const problem = checkAgainstMark(pair, this.mark, where);
    if (problem !== undefined) return this.reject(problem.reason, problem.detail, now);
    const files = { trust: trustBytes, bundle: bundleBytes };
    if (prev !== undefined && pair.policyVersion === prev.policyVersion) {
      // Same content, other bytes (re-signed, re-formatted): nothing to swap but the documents.
      this.pair = pair;
      this.pairBytes = files;
      this.lastGood = true;
      this.confirm(now);
      return 'unchanged';
    }
    // The mark first: a pair is never served whose mark a restart would not know.
    if (this.opts.stateFile !== undefined && (this.mark === undefined || pair.policyVersion > this.mark.policyVersion)) {
      const mark: BundleMark = { policyId: pair.policyId, policyVersion: pair.policyVersion, contentSha256: pair.contentSha256 };
      try {
        writeBundleState(this.opts.stateFile, mark, now);
      } catch (err) {
        const e = codeAndDetail(err);
        return this.reject(e.reason, e.detail, now);
      }
    }
    this.mark = { policyId: pair.policyId, policyVersion: pair.policyVersion, contentSha256: pair.contentSha256 };
    this.pair = pair;
    this.pairBytes = files;
    this.snapshot = { policy: pair.policy, confirmedAtMs: now };
    this.lastGood = true;
    this.emit('loaded', loadedEvent(pair, prev, now));
    return 'loaded';
  }

  private reject(reason: string, detail: string, now: number): CheckOutcome {
    this.lastGood = false;
    const event: BundleRejectedEvent = { reason, detail, servingPolicyVersion: this.pair?.policyVersion, atMs: now };
    this.emit('rejected', event);
    return 'rejected';
  }
}

export type BundleFollowerOptions = ParseBundlePairOptions;

/**
 * A `PolicyProvider` that reads no files: it serves the pairs it is offered (an adapter worker,
 * fed by its cluster primary's `BundleWatcher`). Each offered pair is verified, validated and
 * compiled here too, and held to the same guard against the serving pair (no lower version, no
 * other content under the same version, no other lineage); freshness advances only with the
 * confirmations it is given for the content it serves.
 */
export class BundleFollower extends EventEmitter implements PolicyProvider {
  private readonly opts: BundleFollowerOptions;
  private pair: BundlePair | undefined;
  private snapshot: PolicySnapshot | undefined;

  constructor(opts: BundleFollowerOptions) {
    super();
    assertSigningKeysConfigured(opts);
    this.opts = opts;
  }

  override on(event: 'loaded', listener: (e: BundleLoadedEvent) => void): this;
  override on(event: 'rejected', listener: (e: BundleRejectedEvent) => void): this;
  override on(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  current(): PolicySnapshot | undefined {
    return this.snapshot;
  }

  currentPair(): BundlePair | undefined {
    return this.pair;
  }

  /** Serve this pair if it may replace the serving one; `confirmedAtMs` is when its source last confirmed it. */
  offer(trustBytes: Uint8Array, bundleBytes: Uint8Array, confirmedAtMs: number): CheckOutcome {
    let pair: BundlePair;
    try {
      pair = parseBundlePair(trustBytes, bundleBytes, this.opts);
    } catch (err) {
      const e = codeAndDetail(err);
      return this.reject(e.reason, e.detail, confirmedAtMs);
    }
    const prev = this.pair;
    const problem = checkAgainstMark(pair, prev, 'the serving pair');
    if (problem !== undefined) return this.reject(problem.reason, problem.detail, confirmedAtMs);
    this.pair = pair;
    if (prev !== undefined && pair.policyVersion === prev.policyVersion) {
      this.confirm({ contentSha256: pair.contentSha256, atMs: confirmedAtMs });
      return 'unchanged';
    }
    this.snapshot = { policy: pair.policy, confirmedAtMs };
    this.emit('loaded', loadedEvent(pair, prev, confirmedAtMs));
    return 'loaded';
  }

  /** The source confirmed `contentSha256` current at `atMs`: freshness advances if that is what is served. */
  confirm(e: { readonly contentSha256: string; readonly atMs: number }): boolean {
    if (this.pair === undefined || this.snapshot === undefined || e.contentSha256 !== this.pair.contentSha256) return false;
    if (e.atMs > this.snapshot.confirmedAtMs) this.snapshot = { policy: this.pair.policy, confirmedAtMs: e.atMs };
    return true;
  }

  /** Report a refusal made by the source (the worker logs, audits and counts it as its own). */
  relayRejected(e: Pick<BundleRejectedEvent, 'reason' | 'detail' | 'atMs'>): void {
    this.reject(e.reason, e.detail, e.atMs);
  }

  /** The source reads the files; there is nothing to re-read here. */
  reload(): CheckOutcome {
    return this.pair === undefined ? 'rejected' : 'unchanged';
  }

  close(): void {
    // Nothing to stop: the last snapshot stays readable.
  }

  private reject(reason: string, detail: string, now: number): CheckOutcome {
    const event: BundleRejectedEvent = { reason, detail, servingPolicyVersion: this.pair?.policyVersion, atMs: now };
    this.emit('rejected', event);
    return 'rejected';
  }
}
