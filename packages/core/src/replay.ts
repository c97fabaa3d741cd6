/**
 * Replay stores: consume a passport's jti exactly once (SPEC §5). `consume` is atomic and is
 * called only for an otherwise fully valid request. A store that cannot answer throws
 * `ReplayStoreError`, and the verifier denies (fail closed) — an error is never "not seen".
 */
import { sha256Prefix16 } from './encoding.js';

export type ConsumeResult = 'fresh' | 'replay';

export interface ReplayStore {
  /**
   * Record `key` until `expiresAtMs` (passport exp + skew). Returns `fresh` the first time,
   * `replay` while a previous record is live. Throws ReplayStoreError when it cannot answer.
   */
  consume(key: string, expiresAtMs: number, nowMs: number): ConsumeResult | Promise<ConsumeResult>;
  /** Readiness probe: resolves when the store can answer. */
  ping?(): Promise<void>;
  close?(): Promise<void>;
}

export class ReplayStoreError extends Error {
  constructor(
    readonly reason: 'replay_store_unavailable' | 'replay_store_full',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ReplayStoreError';
  }
}

/**
 * The key a jti is stored under: namespaced by issuer (two issuers may mint the same jti) and
 * hashed to a fixed 16 bytes (as a one-byte string), which bounds memory per entry whatever
 * the jti length.
 */
export function replayKey(issuer: string, jti: string): string {
  // Length-prefixed so that no (issuer, jti) pair can collide with another by moving a separator.
  return sha256Prefix16(`${issuer.length}:${issuer}\n${jti}`);
}

export interface MemoryReplayStoreOptions {
  /** Maximum live entries; when full, new jtis are refused (503) rather than evicting live ones. */
  maxEntries?: number;
}

/**
 * In-memory replay store for a single adapter process. Entries live until their expiry; expired
 * entries are reclaimed at most once per second by sweeping per-second expiry buckets.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly maxEntries: number;
  private readonly entries = new Map<string, number>();
  /** expiry second → keys expiring in it */
  private readonly buckets = new Map<number, string[]>();
  private sweptThrough = -Infinity;

  constructor(opts: MemoryReplayStoreOptions = {}) {
    const max = opts.maxEntries ?? 1_000_000;
    if (!Number.isSafeInteger(max) || max <= 0) throw new TypeError('maxEntries must be a positive integer');
    this.maxEntries = max;
  }

  get size(): number {
    return this.entries.size;
  }

  consume(key: string, expiresAtMs: number, nowMs: number): ConsumeResult {
    this.sweep(nowMs);
    const existing = this.entries.get(key);
    if (existing !== undefined && existing > nowMs) return 'replay';
    if (existing === undefined && this.entries.size >= this.maxEntries) {
      throw new ReplayStoreError('replay_store_full', `in-memory replay store holds its maximum of ${this.maxEntries} live entries`);
    }
    this.entries.set(key, expiresAtMs);
    const sec = Math.floor(expiresAtMs / 1000);
    const bucket = this.buckets.get(sec);
    if (bucket === undefined) this.buckets.set(sec, [key]);
    else bucket.push(key);
    return 'fresh';
  }

  /** Reclaim expired entries (called from consume; at most one pass per second). */
  sweep(nowMs: number): void {
    const nowSec = Math.floor(nowMs / 1000);
    if (nowSec <= this.sweptThrough) return;
    this.sweptThrough = nowSec;
    for (const [sec, keys] of this.buckets) {
      if (sec >= nowSec) continue;
      for (const k of keys) {
        const exp = this.entries.get(k);
        if (exp !== undefined && exp <= nowMs) this.entries.delete(k);
      }
      this.buckets.delete(sec);
    }
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.entries.clear();
    this.buckets.clear();
    return Promise.resolve();
  }
}
