/**
 * The issuer's keys on disk, with a rotation timeline driven by an injected clock.
 *
 * Layout of the key directory (created 0700; refused when group or others may write to it):
 *   <kid>.key     the private key, base64url of seed ‖ public (SPEC §3), mode 0600 (refused when
 *                 group or others may read or write it)
 *   keyring.json  the settings and the timeline: {"settings":{rotate_every_seconds,
 *                 prepublish_seconds, max_passport_lifetime_seconds, skew_seconds}, "keys":[{kid,
 *                 public_key_b64url, created_at, activates_at, retires_at?, expires_at?}]}
 *                 (seconds since the epoch), mode 0600; "settings" is absent in files written
 *                 before it existed
 *   keyring.lock  present only while a process changes the directory
 *
 * A key is PUBLISHED from `created_at` until `expires_at` and SIGNS from `activates_at` until
 * `retires_at`. Rotation creates the next key `prepublish` seconds before it starts signing, so
 * verifiers that fetch the JWKS learn it in advance; the old key stops signing when the new one
 * starts and stays published for the longest passport lifetime plus the clock skew after that
 * (SPEC §9.6), so every passport it signed can be verified until that passport expires.
 *
 * Who decides the settings: the process that opens the directory with `create` (the default; the
 * service) records its settings in keyring.json, and a process that opens it with
 * `create: false` (`trustplane issuer rotate`, code signing beside the service) uses the recorded
 * ones. So a one-shot rotation cannot compute a retention shorter than the service's and
 * unpublish a key while passports it signed are still valid.
 *
 * Crash safety: every file is written to a temporary name, fsynced and renamed; a new key file is
 * written before the timeline that names it, and expired key files are deleted only after the
 * timeline without them is written, so a crash leaves at worst a key file no entry names (see
 * removeUnnamedFiles for which of those are deleted). A directory without keyring.json is used
 * only when it holds nothing else: keys without their timeline are refused, never replaced.
 *
 * Several processes may share a directory (the service and `trustplane issuer rotate`): changes
 * are made under `keyring.lock` from the timeline as it is on disk, and readers pick up a
 * timeline another process wrote (one stat per read).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
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

/** The rotation settings of a key directory; the service records them in keyring.json. */
export interface KeyringSettings {
  /** A signing key is replaced after this many seconds. */
  readonly rotateEverySeconds: number;
  /** The next key is published this long before it signs. */
  readonly prepublishSeconds: number;
  /** Longest passport lifetime verifiers accept (SPEC §9.6). */
  readonly maxPassportLifetimeSeconds: number;
  /** Clock skew verifiers allow (SPEC §9.6). */
  readonly skewSeconds: number;
}

export interface KeyringOptions {
  clock?: Clock;
  /**
   * true (the default), for the service: a new or empty directory gets its first key, and the
   * settings below (or their defaults) are recorded in keyring.json. false, for one-shot commands
   * and code that signs beside a running service: the directory must hold keys already, the
   * recorded settings are used, and a setting given below must equal the recorded one.
   */
  create?: boolean;
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

/** The next key after `rotate()`. */
export interface RotateResult extends KeyTimelineEntry {
  /** True when a rotation was already pending: this is its key, and nothing was created. */
  readonly alreadyPublished: boolean;
}

export interface MaintainResult {
  /** The kid of a key created by this step (pre-published, or active at once after a gap). */
  rotated?: string;
  /** Kids unpublished and deleted by this step. */
  removed: string[];
  /**
   * Key files named like ours that no entry names but that may have been published (see
   * removeUnnamedFiles): kept, never deleted. Remove them by hand once you know they are not needed.
   */
  kept: string[];
  /** `maintain({ wait: false })` found the lock held by another process: nothing was done. */
  busy?: true;
}

const STATE_FILE = 'keyring.json';
const LOCK_FILE = 'keyring.lock';
const MAX_STATE_BYTES = 1024 * 1024;
const MAX_KEYS = 1000;
/** Also keeps `<kid>.key` inside the directory: no separators, no dot-only names. */
const KID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const GENERATED_KEY_FILE_RE = /^issuer-\d{8}-[A-Za-z0-9_-]{8,43}\.key$/;
const TMP_FILE_RE = /^\.(?:keyring\.json|issuer-\d{8}-[A-Za-z0-9_-]{8,43}\.key)\.[0-9a-f]{16}\.tmp$/; // core writeFileAtomic temp names
/** A lock moved aside by takeOverStaleLock; one is left behind only by a crash in between. */
const ASIDE_LOCK_RE = /^\.keyring\.lock\.[0-9a-f]{16}\.stale$/;
/** A lock older than this was left by a crashed process. */
const STALE_LOCK_MS = 30_000;
const NO_KEYS = 'no issuer keys; start `trustplane issuer serve` to create the first';
const DEFAULT_SETTINGS: KeyringSettings = { rotateEverySeconds: 86_400, prepublishSeconds: 3600, maxPassportLifetimeSeconds: 900, skewSeconds: 30 };
/** The settings, their minimum, and their member name in keyring.json. */
const SETTINGS: readonly (readonly [keyof KeyringSettings, number, string])[] = [
  ['rotateEverySeconds', 1, 'rotate_every_seconds'],
  ['prepublishSeconds', 0, 'prepublish_seconds'],
  ['maxPassportLifetimeSeconds', 1, 'max_passport_lifetime_seconds'],
  ['skewSeconds', 0, 'skew_seconds'],
];

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

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** Each setting an integer at or above its minimum, and (`whole`) rotation longer than pre-publication. */
function checkSettings(s: Record<keyof KeyringSettings, unknown>, nameOf: (i: number) => string = (i) => SETTINGS[i]![0], whole = true): KeyringSettings {
  SETTINGS.forEach(([key, min], i) => {
    const v = s[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new RangeError(`${nameOf(i)} must be an integer ≥ ${min}, got ${String(v)}`);
  });
  const ok = s as KeyringSettings;
  if (whole && ok.rotateEverySeconds <= ok.prepublishSeconds) throw new RangeError(`${nameOf(0)} must be longer than ${nameOf(1)}`);
  return { rotateEverySeconds: ok.rotateEverySeconds, prepublishSeconds: ok.prepublishSeconds, maxPassportLifetimeSeconds: ok.maxPassportLifetimeSeconds, skewSeconds: ok.skewSeconds };
}

function sameSettings(a: KeyringSettings | undefined, b: KeyringSettings): boolean {
  return a !== undefined && SETTINGS.every(([key]) => a[key] === b[key]);
}

interface KeyringState {
  /** Absent in a keyring.json written before settings were recorded. */
  settings?: KeyringSettings;
  keys: KeyTimelineEntry[];
}

/** The settings and timeline of a state file, every member checked. Throws Error naming the file. */
function parseState(text: string, file: string): KeyringState {
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
  let settings: KeyringSettings | undefined;
  const rawSettings = doc['settings'];
  if (rawSettings !== undefined) {
    if (!isJsonObject(rawSettings)) return bad('settings: must be an object');
    try {
      const v = Object.fromEntries(SETTINGS.map(([key, , json]) => [key, rawSettings[json]])) as Record<keyof KeyringSettings, unknown>;
      settings = checkSettings(v, (i) => SETTINGS[i]![2]);
    } catch (err) {
      bad(`settings: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const list = doc['keys'];
  if (list.length > MAX_KEYS) bad(`more than ${MAX_KEYS} keys`);
  const seen = new Set<string>();
  const keys = list.map((e, i): KeyTimelineEntry => {
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
  return { ...(settings !== undefined ? { settings } : {}), keys };
}

export class IssuerKeyring {
  readonly dir: string;
  /** The kid of the first key, when `open()` found an empty directory and created it. */
  createdKid: string | undefined;
  /** The settings keyring.json recorded before `open()` (with `create`) recorded different ones. */
  replacedSettings: KeyringSettings | undefined;
  private readonly clock: Clock;
  private readonly stateFile: string;
  /** This process owns the directory's settings (and may create its first key). */
  private readonly create: boolean;
  /** Settings given to `open()` with `create: false`: each must equal the recorded one. */
  private readonly given: Partial<KeyringSettings>;
  /** The settings in force: this process's own with `create`, else the recorded ones. */
  private cfg: KeyringSettings;
  /** The settings as keyring.json last read or written records them. */
  private recorded: KeyringSettings | undefined;
  private timelineEntries: KeyTimelineEntry[] = [];
  private readonly keys = new Map<string, Ed25519PrivateKey>();
  /** Stat of the state file when this process last read or wrote it. */
  private stamp = 'absent';

  private constructor(dir: string, opts: KeyringOptions) {
    this.dir = dir;
    this.stateFile = path.join(dir, STATE_FILE);
    this.clock = opts.clock ?? systemClock;
    this.create = opts.create ?? true;
    const given = Object.fromEntries(SETTINGS.filter(([key]) => opts[key] !== undefined).map(([key]) => [key, opts[key]])) as Partial<KeyringSettings>;
    this.given = given;
    // Without `create` the recorded settings replace these once read, and open() compares the
    // given ones with them: only each value's own range is checked here.
    this.cfg = checkSettings({ ...DEFAULT_SETTINGS, ...given }, undefined, this.create);
  }

  /** A signing key is replaced after this many seconds. */
  get rotateEverySeconds(): number {
    return this.cfg.rotateEverySeconds;
  }

  /** The next key is published this long before it signs. */
  get prepublishSeconds(): number {
    return this.cfg.prepublishSeconds;
  }

  /** How long a retired key stays published: the longest passport lifetime plus the skew. */
  get retentionSeconds(): number {
    return this.cfg.maxPassportLifetimeSeconds + this.cfg.skewSeconds;
  }

  /** The settings in force (with `create: false`, the ones keyring.json records). */
  get settings(): KeyringSettings {
    return { ...this.cfg };
  }

  /**
   * Open the key directory. With `create` (the default) a new or empty directory gets a first key
   * that signs at once, and this process's settings are recorded in keyring.json; with
   * `create: false` nothing is created: the directory must hold keys already. Refused either way:
   * a directory that holds files but no keyring.json (keys whose timeline was lost are never
   * replaced), and modes that let group or others write the directory or read a private key.
   */
  static open(dir: string, opts: KeyringOptions = {}): IssuerKeyring {
    const k = new IssuerKeyring(path.resolve(dir), opts);
    if (k.create) mkdirSync(k.dir, { recursive: true, mode: 0o700 });
    else if (statOrUndefined(k.dir) === undefined) throw new Error(`${k.dir}: ${NO_KEYS}`);
    k.checkDirMode();
    k.withLock(() => {
      if (k.stamp === 'absent') k.refuseUnlessEmpty();
      if (k.timelineEntries.length === 0) {
        if (!k.create) throw new Error(`${k.dir}: ${NO_KEYS}`);
        const now = k.nowSeconds();
        k.createdKid = k.commitNewKey(k.timelineEntries, now, now).kid;
      } else if (k.create && !sameSettings(k.recorded, k.cfg)) {
        k.replacedSettings = k.recorded;
        k.save(k.timelineEntries);
      } else if (!k.create && k.recorded !== undefined) {
        for (const [key] of SETTINGS) {
          const v = k.given[key];
          if (v !== undefined && v !== k.recorded[key]) throw new Error(`${k.stateFile} records ${key} ${k.recorded[key]} (the service's setting); refusing ${v}`);
        }
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
   * the current key retires. A rotation already pending is returned (`alreadyPublished`), not
   * repeated. Waits for the lock (blocking the thread, ~2 s at most).
   */
  rotate(): RotateResult {
    return this.withLock(() => {
      this.requireRecordedSettings();
      const now = this.nowSeconds();
      const pending = this.timelineEntries.find((e) => e.activates_at > now);
      if (pending !== undefined) return { ...pending, alreadyPublished: true };
      return { ...this.rotateLocked(now), alreadyPublished: false };
    });
  }

  /**
   * The periodic step: rotate when the signing key is due (`rotateEvery − prepublish` after it
   * started signing, so the next key signs `rotateEvery` after it), create a key at once if none
   * signs, unpublish keys past their expiry (timeline first, then the key file), and remove crash
   * leftovers. With `wait: false` (the service's timer) the lock is tried once: when another
   * process holds it, nothing is done and `busy` is set — the event loop is never blocked
   * waiting for a `trustplane issuer rotate`, and the next step does the work.
   */
  maintain(opts: { wait?: boolean } = {}): MaintainResult {
    const busy = (): MaintainResult => ({ removed: [], kept: [], busy: true });
    return this.withLock(() => {
      this.requireRecordedSettings();
      const now = this.nowSeconds();
      const out: MaintainResult = { removed: [], kept: [] };
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
      out.kept = this.removeUnnamedFiles();
      return out;
    }, opts.wait === false ? busy : undefined);
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

  /** A process that does not own the settings writes only with recorded ones: never guessed ones. */
  private requireRecordedSettings(): void {
    if (!this.create && this.recorded === undefined) {
      throw new Error(`${this.stateFile} records no settings (written by an older version): start \`trustplane issuer serve\` once to record them, then retry`);
    }
  }

  /** Create the next key (no rotation is pending). */
  private rotateLocked(now: number): KeyTimelineEntry {
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
    // The owner writes its own settings; any other writer keeps the recorded ones (it writes only
    // when there are some: requireRecordedSettings).
    const settings = this.create ? this.cfg : this.recorded;
    const json = settings === undefined ? undefined : Object.fromEntries(SETTINGS.map(([key, , name]) => [name, settings[key]]));
    writeAtomic(this.stateFile, `${JSON.stringify({ ...(json !== undefined ? { settings: json } : {}), keys: timeline }, null, 2)}\n`);
    this.timelineEntries = timeline;
    this.recorded = settings;
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
    const state = parseState(readFileSync(this.stateFile, 'utf8'), this.stateFile);
    const keys = new Map<string, Ed25519PrivateKey>();
    for (const e of state.keys) {
      let key = this.keys.get(e.kid);
      if (key === undefined) {
        const file = path.join(this.dir, `${e.kid}.key`);
        this.checkKeyFileMode(file);
        try {
          key = parsePrivateKey(readFileSync(file, 'utf8'));
        } catch (err) {
          throw new Error(`${file}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (encodeBase64url(key.publicKey) !== e.public_key_b64url) throw new Error(`${e.kid}.key does not hold the public key ${STATE_FILE} lists for it`);
      keys.set(e.kid, key);
    }
    this.timelineEntries = state.keys;
    this.recorded = state.settings;
    if (!this.create && state.settings !== undefined) this.cfg = state.settings;
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

  /**
   * Group or others able to write the directory could replace a key or the timeline; able to
   * read or write a key file, could take or replace the issuer's identity. Both are refused
   * (keyring.json holds public data only, so its mode is not checked).
   */
  private checkDirMode(): void {
    const st = statSync(this.dir);
    if (!st.isDirectory()) throw new Error(`${this.dir} is not a directory`);
    if ((st.mode & 0o022) !== 0) throw new Error(`${this.dir} is writable by group or others (mode ${octal(st.mode)}): run chmod 700 ${this.dir}`);
  }

  private checkKeyFileMode(file: string): void {
    const st = statSync(file);
    if ((st.mode & 0o066) !== 0) throw new Error(`${file} is readable or writable by group or others (mode ${octal(st.mode)}): run chmod 600 ${file}`);
  }

  /**
   * keyring.json is absent: the directory is used only if it holds nothing but our own leftovers
   * (the lock, staging temporaries). Key files without their timeline mean the timeline was lost;
   * a new first key beside them would silently replace the issuer's identity (and the old keys
   * would look like crash leftovers), so the directory is refused and left as it is.
   */
  private refuseUnlessEmpty(): void {
    const others = readdirSync(this.dir).filter((f) => f !== LOCK_FILE && !TMP_FILE_RE.test(f) && !ASIDE_LOCK_RE.test(f)).sort();
    if (others.length === 0) return;
    const names = others.length > 5 ? `${others.slice(0, 5).join(', ')} and ${others.length - 5} more` : others.join(', ');
    throw new Error(`${this.dir} holds ${names} but no ${STATE_FILE}: refusing to create a new key beside them; restore ${STATE_FILE} from a backup of this directory (or use an empty directory for a new issuer)`);
  }

  /**
   * Run `fn` holding keyring.lock, on the timeline as it is on disk. A held lock is waited for
   * (~2 s at most, blocking the thread: for one-shot commands), or, when `ifBusy` is given, tried
   * once and `ifBusy()` returned (the service's timer: its event loop must not stall).
   */
  private withLock<T>(fn: () => T, ifBusy?: () => T): T {
    const lock = path.join(this.dir, LOCK_FILE);
    // Written into the lock: the lock is removed at the end only if it still holds this token.
    const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
    let fd: number | undefined;
    for (let attempt = 0; fd === undefined; attempt++) {
      try {
        fd = openSync(lock, 'wx', 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const st = statOrUndefined(lock);
        if (st === undefined && attempt < 200) continue; // released meanwhile: try again at once
        if (st !== undefined && Date.now() - st.mtimeMs > STALE_LOCK_MS) this.takeOverStaleLock(lock);
        else if (ifBusy !== undefined) return ifBusy();
        else if (attempt >= 200) throw new Error(`${lock} is held by another process (remove it if no trustplane issuer process runs)`);
        else sleepSync(10);
      }
    }
    try {
      writeSync(fd, token);
      this.refresh();
      this.checkDirMode();
      for (const e of this.timelineEntries) this.checkKeyFileMode(path.join(this.dir, `${e.kid}.key`));
      return fn();
    } finally {
      closeSync(fd);
      // Held longer than STALE_LOCK_MS, the lock may have been taken over: then it is another
      // process's now, and stays. (Reading and removing are two steps; another process could take
      // the lock over in between only if this one had held it for 30 s already.)
      let current: string | undefined;
      try {
        current = readFileSync(lock, 'utf8');
      } catch {
        current = undefined;
      }
      if (current === token) rmSync(lock, { force: true });
    }
  }

  /**
   * Remove a lock left by a crashed process, and only that one. Two processes may judge the same
   * lock stale; the first removes it and takes a fresh lock, which the second must not remove.
   * So the lock is moved to a name only this process uses and judged again there (by its mtime:
   * an inode number can be reused at once): a fresh lock is put back. Linking back fails rather
   * than overwrite a third process's lock.
   */
  private takeOverStaleLock(lock: string): void {
    const aside = path.join(this.dir, `.${LOCK_FILE}.${randomBytes(8).toString('hex')}.stale`);
    try {
      renameSync(lock, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // released or taken over meanwhile
      throw err;
    }
    try {
      if (Date.now() - statSync(aside).mtimeMs <= STALE_LOCK_MS) linkSync(aside, lock);
    } finally {
      rmSync(aside, { force: true });
    }
  }

  /**
   * Remove what is provably a crash leftover of this code's own writes, and nothing else:
   * - a staging temporary of the atomic write (`.<name>.<16 hex>.tmp`): one that still exists was
   *   never renamed to its name, so its content was never used or published;
   * - a stale lock moved aside by a takeover that crashed (older than STALE_LOCK_MS: a fresh one
   *   may be another process's lock on its way back);
   * - a key file named like ours that no entry names and that was last written after keyring.json
   *   last changed (its mtime later than keyring.json's ctime): a crash between writing a new key
   *   and the timeline naming it, so no timeline ever named it. keyring.json's ctime cannot be set
   *   back — restoring it (cp -p, tar, rsync -t) makes it later than every key file already there.
   * Every other unnamed key file may have been published (a crash between unpublishing an expired
   * key and deleting its file, keyring.json restored from an older backup): it is kept, never
   * deleted, and returned so that the service can report it. Runs under the lock.
   */
  private removeUnnamedFiles(): string[] {
    const named = new Set(this.timelineEntries.map((e) => `${e.kid}.key`));
    const state = statOrUndefined(this.stateFile);
    const kept: string[] = [];
    for (const f of readdirSync(this.dir)) {
      const file = path.join(this.dir, f);
      if (TMP_FILE_RE.test(f)) {
        rmSync(file, { force: true });
      } else if (ASIDE_LOCK_RE.test(f)) {
        const st = statOrUndefined(file);
        if (st !== undefined && Date.now() - st.mtimeMs > STALE_LOCK_MS) rmSync(file, { force: true });
      } else if (GENERATED_KEY_FILE_RE.test(f) && !named.has(f)) {
        const st = statOrUndefined(file);
        if (st === undefined) continue;
        if (state !== undefined && st.mtimeMs > state.ctimeMs) rmSync(file, { force: true });
        else kept.push(f);
      }
    }
    return kept.sort();
  }
}
