/**
 * The issuer's keys on disk, with a rotation timeline driven by an injected clock.
 *
 * Layout of the key directory (created 0700):
 *   <kid>.key     the private key, base64url of seed ‖ public (SPEC §3), mode 0600
 *   keyring.json  the timeline: {"keys":[{kid, public_key_b64url, created_at, activates_at,
 *                 retires_at?, expires_at?}]} (seconds since the epoch), mode 0600
 *   keyring.lock  present only while a process changes the directory
 *
 * A key is PUBLISHED from `created_at` until `expires_at` and SIGNS from `activates_at` until
 * `retires_at`. Rotation creates the next key `prepublish` seconds before it starts signing, so
 * verifiers that fetch the JWKS learn it in advance; the old key stops signing when the new one
 * starts and stays published for the longest passport lifetime plus the clock skew after that
 * (SPEC §9.6), so every passport it signed can be verified until that passport expires.
 *
 * Crash safety: every file is written to a temporary name, fsynced and renamed; a new key file is
 * written before the timeline that names it, and expired key files are deleted only after the
 * timeline without them is written, so a crash leaves at worst an unnamed key file (never used,
 * never published, deleted by the next `maintain()`).
 *
 * Several processes may share a directory (the service and `trustplane issuer rotate`): changes
 * are made under `keyring.lock` from the timeline as it is on disk, and readers pick up a
 * timeline another process wrote (one stat per read).
 */
import { mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync, closeSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { encodeBase64url, formatPrivateKey, generatePrivateKey, isJsonObject, parseJsonStrict, parsePrivateKey, systemClock, writeFileAtomic, type Clock, type Ed25519PrivateKey } from '@trustplane/core';

export interface KeyTimelineEntry {
  readonly kid: string;
  readonly public_key_b64url: string;
  /** Published from (seconds since the epoch). */
  readonly created_at: number;
  /** Signs from. */
  readonly activates_at: number;
  /** Stops signing (set when the next key is created). */
  readonly retires_at?: number;
  /** Unpublished and deleted: `retires_at` + longest passport lifetime + skew. */
  readonly expires_at?: number;
}

export interface KeyringOptions {
  clock?: Clock;
  /** A signing key is replaced after this many seconds (default 86400). */
  rotateEverySeconds?: number;
  /** The next key is published this long before it signs (default 3600). */
  prepublishSeconds?: number;
  /** Longest passport lifetime verifiers accept (default 900, SPEC §9.6). */
  maxPassportLifetimeSeconds?: number;
  /** Clock skew verifiers allow (default 30, SPEC §9.6). */
  skewSeconds?: number;
}

export interface PublishedKey {
  readonly kid: string;
  readonly publicKeyB64url: string;
  /** `next`: published, not signing yet; `active`: signs now; `retiring`: published, no longer signs. */
  readonly status: 'next' | 'active' | 'retiring';
  readonly activatesAt: number;
  readonly retiresAt?: number;
  readonly expiresAt?: number;
}

/** A JWK of the published set (RFC 7517, RFC 8037 OKP Ed25519). Public members only. */
export interface IssuerJwk {
  readonly kty: 'OKP';
  readonly crv: 'Ed25519';
  readonly x: string;
  readonly kid: string;
  readonly alg: 'EdDSA';
  readonly use: 'sig';
}

export interface MaintainResult {
  /** The kid of a key created by this step (pre-published, or active at once after a gap). */
  rotated?: string;
  /** Kids unpublished and deleted by this step. */
  removed: string[];
}

const STATE_FILE = 'keyring.json';
const LOCK_FILE = 'keyring.lock';
const MAX_STATE_BYTES = 1024 * 1024;
const MAX_KEYS = 1000;
/** Also keeps `<kid>.key` inside the directory: no separators, no dot-only names. */
const KID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const GENERATED_KEY_FILE_RE = /^issuer-\d{8}-[A-Za-z0-9_-]{8,43}\.key$/;
const TMP_FILE_RE = /^\.(?:keyring\.json|issuer-\d{8}-[A-Za-z0-9_-]{8,43}\.key)\.[0-9a-f]{16}\.tmp$/; // core writeFileAtomic temp names
/** A lock older than this was left by a crashed process. */
const STALE_LOCK_MS = 30_000;

function writeAtomic(file: string, data: string): void {
  writeFileAtomic(file, data, { mode: 0o600, overwrite: true });
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function stampOf(st: Stats | undefined): string {
  return st === undefined ? 'absent' : `${st.ino}:${st.mtimeMs}:${st.size}`;
}

function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function checkSeconds(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer ≥ ${min}, got ${v}`);
}

/** The timeline of a state file, every member checked. Throws Error naming the file. */
function parseTimeline(text: string, file: string): KeyTimelineEntry[] {
  const bad = (what: string): never => {
    throw new Error(`${file}: ${what}`);
  };
  let doc: unknown;
  try {
    doc = parseJsonStrict(text);
  } catch (err) {
    bad(`not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isJsonObject(doc) || !Array.isArray(doc['keys'])) return bad('expected {"keys":[…]}');
  const list = doc['keys'];
  if (list.length > MAX_KEYS) bad(`more than ${MAX_KEYS} keys`);
  const seen = new Set<string>();
  return list.map((e, i) => {
    const at = `keys[${i}]`;
    if (!isJsonObject(e)) return bad(`${at}: must be an object`);
    const kid = e['kid'];
    if (typeof kid !== 'string' || !KID_RE.test(kid)) return bad(`${at}.kid: must match ${KID_RE.source}`);
    if (seen.has(kid)) bad(`${at}.kid: duplicate kid ${kid}`);
    seen.add(kid);
    if (typeof e['public_key_b64url'] !== 'string') return bad(`${at}.public_key_b64url: must be a string`);
    const num = (name: string, optional: boolean): number | undefined => {
      const v = e[name];
      if (v === undefined && optional) return undefined;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return bad(`${at}.${name}: must be a non-negative integer`);
      return v;
    };
    const created = num('created_at', false)!;
    const activates = num('activates_at', false)!;
    const retires = num('retires_at', true);
    const expires = num('expires_at', true);
    if (activates < created) bad(`${at}: activates_at is before created_at`);
    if (retires !== undefined && retires < activates) bad(`${at}: retires_at is before activates_at`);
    if (expires !== undefined && (retires === undefined || expires < retires)) bad(`${at}: expires_at needs a retires_at at or before it`);
    return {
      kid,
      public_key_b64url: e['public_key_b64url'],
      created_at: created,
      activates_at: activates,
      ...(retires !== undefined ? { retires_at: retires } : {}),
      ...(expires !== undefined ? { expires_at: expires } : {}),
    };
  });
}

export class IssuerKeyring {
  readonly dir: string;
  readonly rotateEverySeconds: number;
  readonly prepublishSeconds: number;
  /** How long a retired key stays published: the longest passport lifetime plus the skew. */
  readonly retentionSeconds: number;
  /** The kid of the first key, when `open()` found an empty directory and created it. */
  createdKid: string | undefined;
  private readonly clock: Clock;
  private readonly stateFile: string;
  private timelineEntries: KeyTimelineEntry[] = [];
  private readonly keys = new Map<string, Ed25519PrivateKey>();
  /** Stat of the state file when this process last read or wrote it. */
  private stamp = 'absent';

  private constructor(dir: string, opts: KeyringOptions) {
    this.dir = dir;
    this.stateFile = path.join(dir, STATE_FILE);
    this.clock = opts.clock ?? systemClock;
    this.rotateEverySeconds = opts.rotateEverySeconds ?? 86_400;
    this.prepublishSeconds = opts.prepublishSeconds ?? 3600;
    const lifetime = opts.maxPassportLifetimeSeconds ?? 900;
    const skew = opts.skewSeconds ?? 30;
    checkSeconds('rotateEverySeconds', this.rotateEverySeconds, 1);
    checkSeconds('prepublishSeconds', this.prepublishSeconds, 0);
    checkSeconds('maxPassportLifetimeSeconds', lifetime, 1);
    checkSeconds('skewSeconds', skew, 0);
    if (this.rotateEverySeconds <= this.prepublishSeconds) throw new RangeError('rotateEverySeconds must be longer than prepublishSeconds');
    this.retentionSeconds = lifetime + skew;
  }

  /** Open the key directory; an empty (or new) one gets a first key that signs at once. */
  static open(dir: string, opts: KeyringOptions = {}): IssuerKeyring {
    const k = new IssuerKeyring(path.resolve(dir), opts);
    mkdirSync(k.dir, { recursive: true, mode: 0o700 });
    k.withLock(() => {
      if (k.timelineEntries.length === 0) {
        const now = k.nowSeconds();
        k.createdKid = k.commitNewKey(k.timelineEntries, now, now).kid;
      }
    });
    return k;
  }

  /** The key that signs now. */
  signingKey(): { kid: string; privateKey: Ed25519PrivateKey } {
    this.refreshQuietly();
    const e = this.signingEntry(this.timelineEntries, this.nowSeconds());
    const key = e === undefined ? undefined : this.keys.get(e.kid);
    if (e === undefined || key === undefined) throw new Error(`no issuer key signs now in ${this.dir} (run maintain() or \`trustplane issuer rotate\`)`);
    return { kid: e.kid, privateKey: key };
  }

  /** The keys verifiers must know now: the next one (pre-published), the active one, retiring ones. */
  publishedKeys(): PublishedKey[] {
    this.refreshQuietly();
    const now = this.nowSeconds();
    const active = this.signingEntry(this.timelineEntries, now);
    return this.timelineEntries
      .filter((e) => e.created_at <= now && (e.expires_at === undefined || now < e.expires_at))
      .map((e) => ({
        kid: e.kid,
        publicKeyB64url: e.public_key_b64url,
        status: e === active ? 'active' : e.activates_at > now ? 'next' : 'retiring',
        activatesAt: e.activates_at,
        ...(e.retires_at !== undefined ? { retiresAt: e.retires_at } : {}),
        ...(e.expires_at !== undefined ? { expiresAt: e.expires_at } : {}),
      }));
  }

  /** The timeline as this process last read it (public data only). */
  timeline(): KeyTimelineEntry[] {
    this.refreshQuietly();
    return this.timelineEntries.map((e) => ({ ...e }));
  }

  /** RFC 7517 JWK Set of the published keys (RFC 8037 OKP Ed25519); never private material. */
  jwks(): { keys: IssuerJwk[] } {
    return { keys: this.publishedKeys().map((k) => ({ kty: 'OKP', crv: 'Ed25519', x: k.publicKeyB64url, kid: k.kid, alg: 'EdDSA', use: 'sig' })) };
  }

  /**
   * Rotate now: the next key is published at once and signs `prepublish` seconds later, when
   * the current key retires. A rotation already pending is returned, not repeated.
   */
  rotate(): KeyTimelineEntry {
    return this.withLock(() => this.rotateLocked(this.nowSeconds()));
  }

  /**
   * The periodic step: rotate when the signing key is due (`rotateEvery − prepublish` after it
   * started signing, so the next key signs `rotateEvery` after it), create a key at once if none
   * signs, and unpublish keys past their expiry (timeline first, then the key file).
   */
  maintain(): MaintainResult {
    return this.withLock(() => {
      const now = this.nowSeconds();
      const out: MaintainResult = { removed: [] };
      const active = this.signingEntry(this.timelineEntries, now);
      const pending = this.timelineEntries.some((e) => e.activates_at > now);
      if (active === undefined) out.rotated = this.commitNewKey(this.timelineEntries, now, now).kid;
      else if (!pending && now - active.activates_at >= this.rotateEverySeconds - this.prepublishSeconds) out.rotated = this.rotateLocked(now).kid;
      const expired = this.timelineEntries.filter((e) => e.expires_at !== undefined && now >= e.expires_at);
      if (expired.length > 0) {
        this.save(this.timelineEntries.filter((e) => !expired.includes(e)));
        for (const e of expired) {
          rmSync(path.join(this.dir, `${e.kid}.key`), { force: true });
          this.keys.delete(e.kid);
          out.removed.push(e.kid);
        }
      }
      this.removeUnnamedFiles();
      return out;
    });
  }

  private nowSeconds(): number {
    return Math.floor(this.clock.now() / 1000);
  }

  private signingEntry(timeline: readonly KeyTimelineEntry[], now: number): KeyTimelineEntry | undefined {
    let best: KeyTimelineEntry | undefined;
    for (const e of timeline) {
      if (e.activates_at <= now && (e.retires_at === undefined || now < e.retires_at) && (best === undefined || e.activates_at > best.activates_at)) best = e;
    }
    return best;
  }

  private rotateLocked(now: number): KeyTimelineEntry {
    const pending = this.timelineEntries.find((e) => e.activates_at > now);
    if (pending !== undefined) return pending;
    const activatesAt = now + this.prepublishSeconds;
    const current = this.signingEntry(this.timelineEntries, now);
    // Every key that would still sign at the switch retires then (normally just the current one).
    const base = this.timelineEntries.map((e) =>
      e === current || (e.activates_at <= now && e.retires_at === undefined) ? { ...e, retires_at: activatesAt, expires_at: activatesAt + this.retentionSeconds } : e,
    );
    return this.commitNewKey(base, now, activatesAt);
  }

  /** Write a new key file, then the timeline `base` + the new key. */
  private commitNewKey(base: readonly KeyTimelineEntry[], createdAt: number, activatesAt: number): KeyTimelineEntry {
    if (base.length >= MAX_KEYS) throw new Error(`${this.stateFile}: more than ${MAX_KEYS} keys`);
    const key = generatePrivateKey();
    const pub = encodeBase64url(key.publicKey);
    const day = new Date(activatesAt * 1000).toISOString().slice(0, 10).replace(/-/g, '');
    // `issuer-<activation day>-<start of the public key>`: readable, and unique in practice;
    // a collision with an existing kid takes more of the key.
    let kid = `issuer-${day}-${pub.slice(0, 8)}`;
    for (let n = 12; base.some((e) => e.kid === kid) && n <= 43; n += 4) kid = `issuer-${day}-${pub.slice(0, n)}`;
    if (!KID_RE.test(kid) || base.some((e) => e.kid === kid)) throw new Error(`cannot name the new key uniquely (${kid})`);
    writeAtomic(path.join(this.dir, `${kid}.key`), `${formatPrivateKey(key)}\n`);
    const entry: KeyTimelineEntry = { kid, public_key_b64url: pub, created_at: createdAt, activates_at: activatesAt };
    this.keys.set(kid, key);
    this.save([...base, entry]);
    return entry;
  }

  private save(timeline: KeyTimelineEntry[]): void {
    writeAtomic(this.stateFile, `${JSON.stringify({ keys: timeline }, null, 2)}\n`);
    this.timelineEntries = timeline;
    this.stamp = stampOf(statOrUndefined(this.stateFile));
  }

  /** Re-read the timeline (and any key file not loaded yet) when another process changed it. */
  private refresh(): void {
    const st = statOrUndefined(this.stateFile);
    const stamp = stampOf(st);
    if (stamp === this.stamp) return;
    if (st === undefined) {
      if (this.timelineEntries.length > 0) throw new Error(`${this.stateFile} disappeared`);
      this.stamp = stamp;
      return;
    }
    if (st.size > MAX_STATE_BYTES) throw new Error(`${this.stateFile}: larger than ${MAX_STATE_BYTES} bytes`);
    const timeline = parseTimeline(readFileSync(this.stateFile, 'utf8'), this.stateFile);
    const keys = new Map<string, Ed25519PrivateKey>();
    for (const e of timeline) {
      let key = this.keys.get(e.kid);
      if (key === undefined) {
        const file = path.join(this.dir, `${e.kid}.key`);
        try {
          key = parsePrivateKey(readFileSync(file, 'utf8'));
        } catch (err) {
          throw new Error(`${file}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (encodeBase64url(key.publicKey) !== e.public_key_b64url) throw new Error(`${e.kid}.key does not hold the public key ${STATE_FILE} lists for it`);
      keys.set(e.kid, key);
    }
    this.timelineEntries = timeline;
    this.keys.clear();
    for (const [kid, key] of keys) this.keys.set(kid, key);
    this.stamp = stamp;
  }

  /** Readers keep the last good timeline when the file cannot be read; writers do not (withLock). */
  private refreshQuietly(): void {
    try {
      this.refresh();
    } catch {
      // The next maintain() reports it; signing and publishing go on with what was read before.
    }
  }

  /** Run `fn` holding keyring.lock, on the timeline as it is on disk. */
  private withLock<T>(fn: () => T): T {
    const lock = path.join(this.dir, LOCK_FILE);
    let fd: number | undefined;
    for (let attempt = 0; fd === undefined; attempt++) {
      try {
        fd = openSync(lock, 'wx', 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const st = statOrUndefined(lock);
        if (st !== undefined && Date.now() - st.mtimeMs > STALE_LOCK_MS) rmSync(lock, { force: true });
        else if (attempt >= 200) throw new Error(`${lock} is held by another process (remove it if no trustplane issuer process runs)`);
        else sleepSync(10);
      }
    }
    try {
      writeSync(fd, `${process.pid}\n`);
      this.refresh();
      return fn();
    } finally {
      closeSync(fd);
      rmSync(lock, { force: true });
    }
  }

  /**
   * Our key files that no timeline entry names (a crash between writing a key and the timeline)
   * and our temporaries. Runs under the lock, so no other process is writing either.
   */
  private removeUnnamedFiles(): void {
    const named = new Set(this.timelineEntries.map((e) => `${e.kid}.key`));
    for (const f of readdirSync(this.dir)) {
      if ((GENERATED_KEY_FILE_RE.test(f) && !named.has(f)) || TMP_FILE_RE.test(f)) rmSync(path.join(this.dir, f), { force: true });
    }
  }
}
