/**
 * Hot reload (SPEC §4): a `PolicyProvider` backed by the two files on disk. It loads the pair
 * at start, watches the files' DIRECTORIES (Kubernetes ConfigMap updates swap a symlink, which
 * a watch on the file itself would miss) and polls them (default every second), and reloads on
 * any change and on `reload()` (SIGHUP). A directory event counts only when it names one of the
 * two files or a `..`-prefixed entry (the ConfigMap writer's `..data` symlink and timestamped
 * directories): other files in the same directory — an audit log appended on every request,
 * say — do not make the watcher stat the pair again. A new pair is read whole, signature-checked,
 * validated and compiled, then swapped in as one snapshot. A bad, truncated, unsigned,
 * mismatched or rolled-back pair (a lower `policy_version`, or the same version with other
 * content) is refused: the last good pair keeps serving, and a `rejected` event says why.
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
  /** A stable code: invalid_json, invalid_bundle, too_large, read_failed, unsigned_bundle, unknown_signing_key, invalid_bundle_signature, unsupported_signature_format, bundle_pair_mismatch, bundle_rollback, bundle_version_conflict (internal_error for the unexpected). */
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

export class BundleWatcher extends EventEmitter implements PolicyProvider {
  private readonly opts: BundleWatcherOptions;
  private readonly clock: Clock;
  private pair: BundlePair | undefined;
  private snapshot: PolicySnapshot | undefined;
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
  override on(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
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
    if (this.pair !== undefined) this.snapshot = { policy: this.pair.policy, confirmedAtMs: now };
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
    try {
      const max = o.maxBytes ?? MAX_BUNDLE_BYTES;
      const trustBytes = readBundleFile(o.trustMaterialFile, max);
      const bundleBytes = readBundleFile(o.policyBundleFile, max);
      const bytes = sha256Hex(`${sha256Hex(trustBytes)}\n${sha256Hex(bundleBytes)}`);
      if (this.pair !== undefined && bytes === this.pair.bytesSha256) {
        this.lastGood = true;
        this.confirm(now);
        return 'unchanged';
      }
      pair = parseBundlePair(trustBytes, bundleBytes, { ...o, trustMaterialFile: o.trustMaterialFile, policyBundleFile: o.policyBundleFile });
    } catch (err) {
      // Never let a timer callback throw: anything unexpected is a refusal too (fail closed).
      if (!(err instanceof FormatError)) return this.reject('internal_error', err instanceof Error ? err.message : String(err), now);
      return this.reject(err.code, err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message, now);
    }
    const prev = this.pair;
    if (prev !== undefined) {
      if (pair.policyVersion < prev.policyVersion) {
        return this.reject('bundle_rollback', `policy_version ${pair.policyVersion} is lower than the serving ${prev.policyVersion}`, now);
      }
      if (pair.policyVersion === prev.policyVersion) {
        if (pair.contentSha256 !== prev.contentSha256) {
          return this.reject('bundle_version_conflict', `policy_version ${pair.policyVersion} is the serving version but the content differs; increase policy_version`, now);
        }
        // Same content, other bytes (re-signed, re-formatted): nothing to swap but the documents.
        this.pair = pair;
        this.lastGood = true;
        this.confirm(now);
        return 'unchanged';
      }
    }
    this.pair = pair;
    this.snapshot = { policy: pair.policy, confirmedAtMs: now };
    this.lastGood = true;
    const event: BundleLoadedEvent = {
      policyId: pair.policyId,
      policyVersion: pair.policyVersion,
      previousPolicyVersion: prev?.policyVersion,
      trustMaterialSigner: pair.trustSignature.status === 'valid' ? pair.trustSignature.kid : undefined,
      policyBundleSigner: pair.bundleSignature.status === 'valid' ? pair.bundleSignature.kid : undefined,
      atMs: now,
    };
    this.emit('loaded', event);
    return 'loaded';
  }

  private reject(reason: string, detail: string, now: number): CheckOutcome {
    this.lastGood = false;
    const event: BundleRejectedEvent = { reason, detail, servingPolicyVersion: this.pair?.policyVersion, atMs: now };
    this.emit('rejected', event);
    return 'rejected';
  }
}
