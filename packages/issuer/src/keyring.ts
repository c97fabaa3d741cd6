/**
 * The issuer's keys on disk, with a rotation timeline driven by an injected clock.
 *
 * Layout of the key directory (created 0700):
 *   <kid>.key     the private key, base64url of seed ‖ public (SPEC §3), mode 0600
 *   keyring.json  the timeline: [{kid, public_key_b64url, created_at, activates_at,
 *                 retires_at?, expires_at?}] (seconds since the epoch), mode 0600
 *
 * A key is PUBLISHED from `created_at` until `expires_at`, SIGNS from `activates_at` until
 * `retires_at`. Rotation creates the next key `prepublish` seconds before it starts signing, so
 * verifiers that fetch the JWKS learn it in advance; the old key stops signing when the new one
 * starts, and stays published for the longest passport lifetime plus the clock skew after that,
 * so every passport it signed can still be verified until it expires.
 *
 * Crash safety: a new key file is written (atomically) before the timeline that names it; a key
 * file without a timeline entry is ignored; expired key files are deleted only after the timeline
 * without them is written.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { encodeBase64url, formatPrivateKey, generatePrivateKey, parsePrivateKey, systemClock, type Clock, type Ed25519PrivateKey } from '@trustplane/core';

export interface KeyTimelineEntry {
  kid: string;
  public_key_b64url: string;
  created_at: number;
  activates_at: number;
  retires_at?: number;
  expires_at?: number;
}

export interface KeyringOptions {
  clock?: Clock;
  /** A signing key is replaced after this many seconds (default 86400). */
  rotateEverySeconds?: number;
  /** The next key is published this long before it signs (default 3600). */
  prepublishSeconds?: number;
  /** Longest passport lifetime verifiers accept (default 900). */
  maxPassportLifetimeSeconds?: number;
  /** Clock skew verifiers allow (default 30). */
  skewSeconds?: number;
}

export interface PublishedKey {
  kid: string;
  publicKeyB64url: string;
  status: 'next' | 'active' | 'retiring';
}

const STATE_FILE = 'keyring.json';
const KID_RE = /^[A-Za-z0-9._-]{1,64}$/;

function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export class IssuerKeyring {
  readonly dir: string;
  private readonly clock: Clock;
  readonly rotateEverySeconds: number;
  readonly prepublishSeconds: number;
  /** How long a retired key stays published: the longest passport lifetime plus skew. */
  readonly retentionSeconds: number;
  private timeline: KeyTimelineEntry[] = [];
  private readonly keys = new Map<string, Ed25519PrivateKey>();

  private constructor(dir: string, opts: KeyringOptions) {
    this.dir = dir;
    this.clock = opts.clock ?? systemClock;
    this.rotateEverySeconds = opts.rotateEverySeconds ?? 86_400;
    this.prepublishSeconds = opts.prepublishSeconds ?? 3600;
    this.retentionSeconds = (opts.maxPassportLifetimeSeconds ?? 900) + (opts.skewSeconds ?? 30);
    for (const [name, v] of [['rotateEverySeconds', this.rotateEverySeconds], ['prepublishSeconds', this.prepublishSeconds], ['retention', this.retentionSeconds]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
    }
    if (this.rotateEverySeconds <= this.prepublishSeconds) throw new RangeError('rotateEverySeconds must be longer than prepublishSeconds');
  }

  /** Open (or create, with a first active key) the key directory. */
  static open(dir: string, opts: KeyringOptions = {}): IssuerKeyring {
    const k = new IssuerKeyring(path.resolve(dir), opts);
    mkdirSync(k.dir, { recursive: true, mode: 0o700 });
    const stateFile = path.join(k.dir, STATE_FILE);
    if (existsSync(stateFile)) k.load(stateFile);
    if (k.timeline.length === 0) {
      const now = k.nowSeconds();
      k.addKey(now, now);
    }
    return k;
  }

  private nowSeconds(): number {
    return Math.floor(this.clock.now() / 1000);
  }

  private load(stateFile: string): void {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(stateFile, 'utf8'));
    } catch (err) {
      throw new Error(`${stateFile}: not readable JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    const entries = (doc as { keys?: unknown }).keys;
    if (!Array.isArray(entries)) throw new Error(`${stateFile}: expected {"keys": [...]}`);
    for (const e of entries as KeyTimelineEntry[]) {
      if (typeof e?.kid !== 'string' || !KID_RE.test(e.kid) || typeof e.created_at !== 'number' || typeof e.activates_at !== 'number') {
        throw new Error(`${stateFile}: malformed key entry ${JSON.stringify(e).slice(0, 200)}`);
      }
      const key = parsePrivateKey(readFileSync(path.join(this.dir, `${e.kid}.key`), 'utf8'));
      if (encodeBase64url(key.publicKey) !== e.public_key_b64url) throw new Error(`${e.kid}.key does not hold the public key ${stateFile} lists for it`);
      this.keys.set(e.kid, key);
      this.timeline.push(e);
    }
  }

  private save(): void {
    writeAtomic(path.join(this.dir, STATE_FILE), `${JSON.stringify({ keys: this.timeline }, null, 2)}\n`, 0o600);
  }

  private addKey(createdAt: number, activatesAt: number): KeyTimelineEntry {
    const key = generatePrivateKey();
    const pub = encodeBase64url(key.publicKey);
    const kid = `issuer-${new Date(activatesAt * 1000).toISOString().slice(0, 10).replace(/-/g, '')}-${pub.slice(0, 8).replace(/[^A-Za-z0-9]/g, 'x')}`;
    writeAtomic(path.join(this.dir, `${kid}.key`), `${formatPrivateKey(key)}\n`, 0o600);
    const entry: KeyTimelineEntry = { kid, public_key_b64url: pub, created_at: createdAt, activates_at: activatesAt };
    this.timeline.push(entry);
    this.keys.set(kid, key);
    this.save();
    return entry;
  }

  private signingEntry(now: number): KeyTimelineEntry | undefined {
    let best: KeyTimelineEntry | undefined;
    for (const e of this.timeline) {
      if (e.activates_at <= now && (e.retires_at === undefined || now < e.retires_at) && (best === undefined || e.activates_at > best.activates_at)) best = e;
    }
    return best;
  }

  /** The key that signs now. */
  signingKey(): { kid: string; privateKey: Ed25519PrivateKey } {
    const e = this.signingEntry(this.nowSeconds());
    if (e === undefined) throw new Error('no issuer key is active (the key directory timeline has a gap)');
    return { kid: e.kid, privateKey: this.keys.get(e.kid)! };
  }

  /** Keys verifiers must know now: the next one (pre-published), the active one, retiring ones. */
  publishedKeys(): PublishedKey[] {
    const now = this.nowSeconds();
    const active = this.signingEntry(now);
    return this.timeline
      .filter((e) => e.created_at <= now && (e.expires_at === undefined || now < e.expires_at))
      .map((e) => ({ kid: e.kid, publicKeyB64url: e.public_key_b64url, status: e === active ? 'active' : e.activates_at > now ? 'next' : 'retiring' }));
  }

  /**
   * Rotate now: the next key is published at once and starts signing `prepublish` seconds later,
   * when the current key retires. A rotation already pending is returned, not repeated.
   */
  rotate(): KeyTimelineEntry {
    const now = this.nowSeconds();
    const pending = this.timeline.find((e) => e.activates_at > now);
    if (pending !== undefined) return pending;
    const current = this.signingEntry(now);
    const activatesAt = now + this.prepublishSeconds;
    if (current !== undefined) {
      current.retires_at = activatesAt;
      current.expires_at = activatesAt + this.retentionSeconds;
    }
    return this.addKey(now, activatesAt);
  }

  /**
   * The periodic step: rotate when the active key is due, and forget keys past their
   * expiry (timeline first, then the key file). Returns what it did, for logs.
   */
  maintain(): { rotated?: string; removed: string[] } {
    const now = this.nowSeconds();
    const out: { rotated?: string; removed: string[] } = { removed: [] };
    const active = this.signingEntry(now);
    const pending = this.timeline.some((e) => e.activates_at > now);
    if (active === undefined || (!pending && now - active.activates_at >= this.rotateEverySeconds - this.prepublishSeconds)) {
      out.rotated = active === undefined ? this.addKey(now, now).kid : this.rotate().kid;
    }
    const expired = this.timeline.filter((e) => e.expires_at !== undefined && now >= e.expires_at);
    if (expired.length > 0) {
      this.timeline = this.timeline.filter((e) => !expired.includes(e));
      this.save();
      for (const e of expired) {
        rmSync(path.join(this.dir, `${e.kid}.key`), { force: true });
        this.keys.delete(e.kid);
        out.removed.push(e.kid);
      }
    }
    return out;
  }

  /** RFC 7517 JWK Set of the published keys (RFC 8037 OKP Ed25519); never private material. */
  jwks(): { keys: { kty: 'OKP'; crv: 'Ed25519'; x: string; kid: string; alg: 'EdDSA'; use: 'sig' }[] } {
    return { keys: this.publishedKeys().map((k) => ({ kty: 'OKP', crv: 'Ed25519', x: k.publicKeyB64url, kid: k.kid, alg: 'EdDSA', use: 'sig' })) };
  }
}
