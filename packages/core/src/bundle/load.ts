/**
 * Loading a trust material + policy bundle pair from disk: capped reads, strict JSON, the
 * signatures (SPEC §9.4), the JSON Schemas, the pairing pin, then `compilePolicy`. Each step
 * fails with a precise `BundleFormatError` naming the file. Unsigned, tampered, wrongly signed
 * or unknown-format documents are refused unless `allowUnsigned` — the development flag
 * `--dev-allow-unsigned-bundles`, never for production.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { FormatError } from '../errors.js';
import { sha256Hex } from '../encoding.js';
import { parseJsonBytes, isJsonObject, type JsonObject } from '../json.js';
import type { Ed25519Backend, Ed25519PublicKey } from '../ed25519/backend.js';
import type { CompiledPolicy, PolicyBundle, TrustMaterial } from '../policy.js';
import { canonicalJsonBytes } from './jcs.js';
import { verifyDocumentSignature } from './sign.js';
import { compilePair, validatePolicyBundle, validateTrustMaterial } from './schema.js';
import { BundleFormatError, inFile } from './problems.js';

/** The size cap of one bundle file. */
export const MAX_BUNDLE_BYTES = 8 * 1024 * 1024;
/** JSON nesting allowed in bundle documents (a bundle is about 8 levels deep). */
const MAX_BUNDLE_DEPTH = 24;

/** Bundle-signing public keys by kid. Several at once let the signing key rotate. */
export type BundleSigningKeys = ReadonlyMap<string, Ed25519PublicKey>;

export type SignatureCheck =
  | { readonly status: 'valid'; readonly kid: string; readonly issuer: string; readonly signedAt: string | undefined }
  /** Only with `allowUnsigned`: the signature did not verify, and the document was accepted anyway. */
  | { readonly status: 'not_verified'; readonly code: string; readonly detail: string };

export interface BundlePair {
  readonly policy: CompiledPolicy;
  readonly trust: TrustMaterial;
  readonly bundle: PolicyBundle;
  readonly policyId: string;
  readonly policyVersion: number;
  readonly trustSignature: SignatureCheck;
  readonly bundleSignature: SignatureCheck;
  /** SHA-256 over both documents without their signatures: "same version, same content" compares this. */
  readonly contentSha256: string;
  /** SHA-256 over both files' bytes. */
  readonly bytesSha256: string;
}

export interface ParseBundlePairOptions {
  trustMaterialKeys: BundleSigningKeys;
  policyBundleKeys: BundleSigningKeys;
  /** Development only (`--dev-allow-unsigned-bundles`): accept unsigned or badly signed documents. */
  allowUnsigned?: boolean;
  /** Names used in error messages. */
  trustMaterialFile?: string;
  policyBundleFile?: string;
  /** Size cap of each document (default MAX_BUNDLE_BYTES). */
  maxBytes?: number;
  backend?: Ed25519Backend;
}

export interface LoadBundlePairOptions extends ParseBundlePairOptions {
  trustMaterialFile: string;
  policyBundleFile: string;
}

function systemMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Read a whole regular file, refusing anything over `maxBytes` before reading it all. */
export function readBundleFile(file: string, maxBytes: number = MAX_BUNDLE_BYTES): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new BundleFormatError('read_failed', [{ file, pointer: '', message: `cannot read: ${systemMessage(err)}` }]);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new BundleFormatError('read_failed', [{ file, pointer: '', message: 'is not a regular file' }]);
    const tooLarge = (): BundleFormatError => new BundleFormatError('too_large', [{ file, pointer: '', message: `is larger than ${maxBytes} bytes` }]);
    if (st.size > maxBytes) throw tooLarge();
    // Read to EOF, not to the size fstat saw: the file may change while it is read.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(st.size - total, 0) + 1, maxBytes - total + 1, 1 << 20));
      const got = readSync(fd, chunk, 0, chunk.length, null);
      if (got === 0) break;
      total += got;
      if (total > maxBytes) throw tooLarge();
      chunks.push(chunk.subarray(0, got));
    }
    return Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof BundleFormatError) throw err;
    throw new BundleFormatError('read_failed', [{ file, pointer: '', message: `cannot read: ${systemMessage(err)}` }]);
  } finally {
    closeSync(fd);
  }
}

/** Strict JSON (duplicate keys, unsafe integers, bad UTF-8 refused) that must be an object. */
export function parseBundleDocument(bytes: Uint8Array, file: string, maxBytes: number = MAX_BUNDLE_BYTES): JsonObject {
  let value;
  try {
    value = parseJsonBytes(bytes, maxBytes, file, { maxDepth: MAX_BUNDLE_DEPTH });
  } catch (err) {
    if (err instanceof FormatError) {
      const detail = err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
      // Bad UTF-8 is one way of not being strict JSON: BUNDLE_ERROR_CODES has no code of its own for it.
      const code = err.code === 'invalid_utf8' ? 'invalid_json' : err.code;
      throw new BundleFormatError(code, [{ file, pointer: '', message: code === 'invalid_json' ? `invalid JSON: ${detail}` : detail }]);
    }
    throw err;
  }
  if (!isJsonObject(value)) throw new BundleFormatError('invalid_bundle', [{ file, pointer: '', message: 'must be a JSON object' }]);
  return value;
}

/** SHA-256 (hex) of a document's RFC 8785 form without `signed_by` and `signature`: its content. */
export function documentContentSha256(doc: Readonly<Record<string, unknown>>): string {
  const rest = Object.create(null) as Record<string, unknown>; // `__proto__` is a member like any other
  for (const [k, v] of Object.entries(doc)) if (k !== 'signature' && k !== 'signed_by') rest[k] = v;
  return sha256Hex(canonicalJsonBytes(rest));
}

/** Verify, or with `allowUnsigned` record why it did not verify. Errors name the file. */
export function checkDocumentSignature(doc: JsonObject, keys: BundleSigningKeys, allowUnsigned: boolean, file: string, backend?: Ed25519Backend): SignatureCheck {
  try {
    const v = verifyDocumentSignature(doc, keys, backend === undefined ? {} : { backend });
    return { status: 'valid', kid: v.kid, issuer: v.issuer, signedAt: v.signedAt };
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    if (!allowUnsigned) throw inFile(err, file, '/signature');
    const detail = err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
    return { status: 'not_verified', code: err.code, detail };
  }
}

/** Check the pairing pin: a bundle built for other trust material is refused (mid-update pairs). */
export function checkPairing(trust: TrustMaterial, bundle: PolicyBundle, policyBundleFile: string): void {
  const pin = bundle['trust_material_sha256'];
  if (pin === undefined) return;
  const actual = documentContentSha256(trust);
  if (pin !== actual) {
    throw new BundleFormatError('bundle_pair_mismatch', [
      {
        file: policyBundleFile,
        pointer: '/trust_material_sha256',
        message: `the bundle was built for trust material ${typeof pin === 'string' ? `${pin.slice(0, 16)}…` : '(not a digest)'}, the trust material given is ${actual.slice(0, 16)}… (mid-update, or not a pair)`,
      },
    ]);
  }
}

/** Validate and compile a pair from its bytes (no I/O). */
export function parseBundlePair(trustBytes: Uint8Array, bundleBytes: Uint8Array, opts: ParseBundlePairOptions): BundlePair {
  const trustFile = opts.trustMaterialFile ?? 'trust material';
  const bundleFile = opts.policyBundleFile ?? 'policy bundle';
  const allowUnsigned = opts.allowUnsigned === true;
  const max = opts.maxBytes ?? MAX_BUNDLE_BYTES;
  const trustDoc = parseBundleDocument(trustBytes, trustFile, max);
  const bundleDoc = parseBundleDocument(bundleBytes, bundleFile, max);
  // Signatures first: unauthenticated documents get no further interpretation.
  const trustSignature = checkDocumentSignature(trustDoc, opts.trustMaterialKeys, allowUnsigned, trustFile, opts.backend);
  const bundleSignature = checkDocumentSignature(bundleDoc, opts.policyBundleKeys, allowUnsigned, bundleFile, opts.backend);
  validateTrustMaterial(trustDoc, trustFile);
  validatePolicyBundle(bundleDoc, bundleFile);
  checkPairing(trustDoc, bundleDoc, bundleFile);
  const policy = compilePair(trustDoc, bundleDoc, { trustMaterialFile: trustFile, policyBundleFile: bundleFile, ...(opts.backend === undefined ? {} : { backend: opts.backend }) });
  return {
    policy,
    trust: trustDoc,
    bundle: bundleDoc,
    policyId: policy.policyId,
    policyVersion: policy.policyVersion,
    trustSignature,
    bundleSignature,
    contentSha256: sha256Hex(`${documentContentSha256(trustDoc)}\n${documentContentSha256(bundleDoc)}`),
    bytesSha256: sha256Hex(`${sha256Hex(trustBytes)}\n${sha256Hex(bundleBytes)}`),
  };
}

/** Programmer misuse guard: without signing keys every load would fail, so say so up front. */
export function assertSigningKeysConfigured(opts: ParseBundlePairOptions): void {
  if (opts.allowUnsigned === true) return;
  if (!(opts.trustMaterialKeys instanceof Map) || !(opts.policyBundleKeys instanceof Map) || opts.trustMaterialKeys.size === 0 || opts.policyBundleKeys.size === 0) {
    throw new TypeError('configure at least one bundle-signing public key for the trust material and for the policy bundle (or, in development only, allowUnsigned)');
  }
}

/** Read, verify, validate and compile the pair of files. Throws BundleFormatError. */
export function loadBundlePair(opts: LoadBundlePairOptions): BundlePair {
  assertSigningKeysConfigured(opts);
  const max = opts.maxBytes ?? MAX_BUNDLE_BYTES;
  const trustBytes = readBundleFile(opts.trustMaterialFile, max);
  const bundleBytes = readBundleFile(opts.policyBundleFile, max);
  return parseBundlePair(trustBytes, bundleBytes, opts);
}
