/**
 * Replay stores: consume a passport's jti exactly once (SPEC §5). `consume` is atomic and is
 * called only for an otherwise fully valid request. A store that cannot answer throws
 * `ReplayStoreError`, and the verifier denies (fail closed) — an error is never "not seen".
 */
import { sha256Prefix16, sha256Prefix16Tagged } from './encoding.js';

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

/** Length of a replayKey: the 16-byte record key and the 4-byte issuer tag, one char per byte. */
export const REPLAY_KEY_LENGTH = 20;
/** The part of a replayKey that identifies the record (what Redis stores, unchanged since v1). */
export const REPLAY_RECORD_KEY_LENGTH = 16;

/** Issuer → its 4-character tag; bounded (issuers are the trust material's, so few). */
const issuerTags = new Map<string, string>();

function issuerTag(issuer: string): string {
  let tag = issuerTags.get(issuer);
  if (tag === undefined) {
    const h = sha256Prefix16(`issuer-tag\n${issuer}`);
    tag = String.fromCharCode(h.charCodeAt(0), h.charCodeAt(1), h.charCodeAt(2), h.charCodeAt(3));
    if (issuerTags.size >= 1024) issuerTags.clear();
    issuerTags.set(issuer, tag);
  }
  return tag;
}

/**
 * The key a jti is stored under: 16 bytes that identify the record, namespaced by issuer (two
 * issuers may mint the same jti) and hashed to a fixed size (as a one-byte string), which bounds
 * memory per entry whatever the jti length; then 4 bytes that tag the issuer, so that a store
 * can give each issuer its share of the capacity (MemoryReplayStore `issuerShare`). The record
 * part alone decides replay; shared stores (Redis) keep only it.
 */
export function replayKey(issuer: string, jti: string): string {
  // Length-prefixed so that no (issuer, jti) pair can collide with another by moving a separator.
  return sha256Prefix16Tagged(`${issuer.length}:${issuer}\n${jti}`, issuerTag(issuer));
}

/** The issuer tag of a replayKey as a number, or -1 for a key without one (not from replayKey). */
function tagOf(key: string): number {
  if (key.length !== REPLAY_KEY_LENGTH) return -1;
  return key.charCodeAt(16) * 0x1000000 + ((key.charCodeAt(17) << 16) | (key.charCodeAt(18) << 8) | key.charCodeAt(19));
}

export interface MemoryReplayStoreOptions {
  /** Maximum live entries; when full, new jtis are refused (503) rather than evicting live ones. */
  maxEntries?: number;
  /**
   * The fraction of `maxEntries` one issuer may hold (default 0.5; 1 = no per-issuer limit).
   * With at most one half per issuer, an issuer whose callers fill their share leaves the other
   * half to the others: it cannot make the store full for everyone.
   */
  issuerShare?: number;
}

/**
 * In-memory replay store for a single adapter process. Entries live until their expiry; expired
 * entries are reclaimed at most once per second by sweeping per-second expiry buckets. Each
 * issuer (the tag in its replayKeys) holds at most `issuerShare` of the capacity.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly maxEntries: number;
  /** Live entries one issuer may hold. */
  readonly maxEntriesPerIssuer: number;
  private readonly entries = new Map<string, number>();
  /** issuer tag → its live entries (keys without a tag count only against maxEntries) */
  private readonly perIssuer = new Map<number, number>();
  /** expiry second → keys expiring in it */
  private readonly buckets = new Map<number, string[]>();
  private sweptThrough = -Infinity;

  constructor(opts: MemoryReplayStoreOptions = {}) {
    const max = opts.maxEntries ?? 1_000_000;
    if (!Number.isSafeInteger(max) || max <= 0) throw new TypeError('maxEntries must be a positive integer');
    this.maxEntries = max;
    const share = opts.issuerShare ?? 0.5;
    if (typeof share !== 'number' || !(share > 0 && share <= 1)) throw new TypeError('issuerShare must be a number in (0, 1]');
    this.maxEntriesPerIssuer = Math.max(1, Math.floor(max * share));
  }

  get size(): number {
    return this.entries.size;
  }

  consume(key: string, expiresAtMs: number, nowMs: number): ConsumeResult {
    this.sweep(nowMs);
    const existing = this.entries.get(key);
    if (existing !== undefined && existing > nowMs) return 'replay';
    if (existing === undefined) {
      if (this.entries.size >= this.maxEntries) {
        throw new ReplayStoreError('replay_store_full', `in-memory replay store holds its maximum of ${this.maxEntries} live entries`);
      }
      const tag = tagOf(key);
      if (tag >= 0) {
        const held = this.perIssuer.get(tag) ?? 0;
        if (held >= this.maxEntriesPerIssuer) {
          throw new ReplayStoreError('replay_store_full', `in-memory replay store: this issuer holds its share of ${this.maxEntriesPerIssuer} live entries`);
        }
        this.perIssuer.set(tag, held + 1);
      }
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
        if (exp !== undefined && exp <= nowMs) {
          this.entries.delete(k);
          const tag = tagOf(k);
          if (tag >= 0) {
            const held = (this.perIssuer.get(tag) ?? 1) - 1;
            if (held === 0) this.perIssuer.delete(tag);
            else this.perIssuer.set(tag, held);
          }
        }
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
    this.perIssuer.clear();
    return Promise.resolve();
  }
}
