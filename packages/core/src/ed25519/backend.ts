/**
 * The Ed25519 backend: one small interface with two implementations. libsodium (the optional
 * `sodium-native` dependency, about twice as fast here) is used when it loads; node:crypto
 * otherwise. `TRUSTPLANE_ED25519_BACKEND=node|sodium` forces one. Both are strict (see
 * strict.ts) and must agree on every input.
 *
 * Keys are imported once (bundle load, key file load) into backend handles; the per-request
 * `cnf` key goes through a small cache so a repeat caller is not re-imported.
 */
import * as crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { FormatError } from '../errors.js';
import { isAcceptableSignature, publicKeyProblem } from './strict.js';

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export type BackendName = 'sodium' | 'node';

/** An imported, strictly checked Ed25519 public key. Opaque outside this module. */
export class Ed25519PublicKey {
  /** @internal */
  constructor(
    readonly raw: Buffer,
    /** @internal backend handle: a KeyObject (node) or the raw bytes (sodium) */
    readonly handle: crypto.KeyObject | Buffer,
    readonly backend: BackendName,
  ) {}
}

/** An Ed25519 private key: the 32-byte seed and its public key. Never logged or serialized. */
export class Ed25519PrivateKey {
  /** @internal */
  constructor(
    /** @internal 32-byte seed */
    readonly seed: Buffer,
    readonly publicKey: Buffer,
    /** @internal */
    readonly nodeKey: crypto.KeyObject,
    /** @internal seed ‖ public, the libsodium secret-key layout */
    readonly sodiumSecret: Buffer,
  ) {}

  toJSON(): string {
    return '[Ed25519PrivateKey]';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[Ed25519PrivateKey]';
  }
}

export interface Ed25519Backend {
  readonly name: BackendName;
  /** Strict import: throws FormatError('invalid_public_key') for bad, small-order or non-canonical keys. */
  importPublicKey(raw: Uint8Array): Ed25519PublicKey;
  /** Pure Ed25519 (RFC 8032) verification with the strict signature checks. Never throws on bad input. */
  verify(key: Ed25519PublicKey, message: Uint8Array, signature: Uint8Array): boolean;
  sign(key: Ed25519PrivateKey, message: Uint8Array): Buffer;
}

interface Sodium {
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
}

function checkedRaw(raw: Uint8Array): Buffer {
  const problem = publicKeyProblem(raw);
  if (problem !== undefined) {
    const why = problem === 'wrong_length' ? `must be 32 bytes, got ${raw.byteLength}` : problem === 'small_order' ? 'is a small-order point' : 'is not canonically encoded';
    throw new FormatError('invalid_public_key', `Ed25519 public key ${why}`);
  }
  return Buffer.from(raw); // private copy
}

function nodeKeyFromRaw(raw: Buffer): crypto.KeyObject {
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

class NodeBackend implements Ed25519Backend {
  readonly name = 'node' as const;

  importPublicKey(raw: Uint8Array): Ed25519PublicKey {
    const copy = checkedRaw(raw);
    return new Ed25519PublicKey(copy, nodeKeyFromRaw(copy), 'node');
  }

  verify(key: Ed25519PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
    if (!isAcceptableSignature(signature)) return false;
    const handle = key.backend === 'node' ? (key.handle as crypto.KeyObject) : nodeKeyFromRaw(key.raw);
    try {
      return crypto.verify(null, message, handle, signature);
    } catch {
      return false;
    }
  }

  sign(key: Ed25519PrivateKey, message: Uint8Array): Buffer {
    return crypto.sign(null, message, key.nodeKey);
  }
}

class SodiumBackend implements Ed25519Backend {
  readonly name = 'sodium' as const;

  constructor(private readonly sodium: Sodium) {}

  importPublicKey(raw: Uint8Array): Ed25519PublicKey {
    const copy = checkedRaw(raw);
    return new Ed25519PublicKey(copy, copy, 'sodium');
  }

  verify(key: Ed25519PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
    if (!isAcceptableSignature(signature)) return false;
    try {
      return this.sodium.crypto_sign_verify_detached(signature, message, key.raw);
    } catch {
      return false;
    }
  }

  sign(key: Ed25519PrivateKey, message: Uint8Array): Buffer {
    const sig = Buffer.alloc(64);
    this.sodium.crypto_sign_detached(sig, message, key.sodiumSecret);
    return sig;
  }
}

let sodiumModule: Sodium | null | undefined;

function loadSodium(): Sodium | null {
  if (sodiumModule === undefined) {
    try {
      sodiumModule = createRequire(import.meta.url)('sodium-native') as Sodium;
    } catch {
      sodiumModule = null;
    }
  }
  return sodiumModule;
}

const backends = new Map<BackendName, Ed25519Backend>();

/** Whether libsodium (sodium-native) is installed and loadable. */
export function sodiumAvailable(): boolean {
  return loadSodium() !== null;
}

/**
 * The backend by name, or the default: `TRUSTPLANE_ED25519_BACKEND` if set, else libsodium when
 * available, else node:crypto. Asking for `sodium` when it is not installed is an error.
 */
export function getEd25519Backend(name?: BackendName): Ed25519Backend {
  const env = process.env['TRUSTPLANE_ED25519_BACKEND'];
  let wanted: BackendName | undefined = name;
  if (wanted === undefined && env !== undefined && env !== '') {
    if (env !== 'node' && env !== 'sodium') throw new TypeError(`TRUSTPLANE_ED25519_BACKEND must be "node" or "sodium", got ${JSON.stringify(env)}`);
    wanted = env;
  }
  wanted ??= sodiumAvailable() ? 'sodium' : 'node';
  let backend = backends.get(wanted);
  if (backend === undefined) {
    if (wanted === 'sodium') {
      const sodium = loadSodium();
      if (sodium === null) throw new TypeError('the sodium Ed25519 backend needs the optional dependency sodium-native, which is not installed');
      backend = new SodiumBackend(sodium);
    } else {
      backend = new NodeBackend();
    }
    backends.set(wanted, backend);
  }
  return backend;
}

/** Build a private key from a 32-byte seed (the public key is derived). */
export function privateKeyFromSeed(seed: Uint8Array): Ed25519PrivateKey {
  if (seed.byteLength !== 32) throw new FormatError('invalid_private_key', `Ed25519 seed must be 32 bytes, got ${seed.byteLength}`);
  const seedCopy = Buffer.from(seed);
  const nodeKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seedCopy]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(nodeKey).export({ format: 'der', type: 'spki' });
  const publicKey = Buffer.from(spki.subarray(SPKI_PREFIX.length));
  return new Ed25519PrivateKey(seedCopy, publicKey, nodeKey, Buffer.concat([seedCopy, publicKey]));
}

export function generatePrivateKey(): Ed25519PrivateKey {
  return privateKeyFromSeed(crypto.randomBytes(32));
}
