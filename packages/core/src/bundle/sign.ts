/**
 * Bundle signatures (SPEC §9.4): Ed25519 over the RFC 8785 canonical JSON of the document with
 * `signature` removed and `signed_by` included, carried as
 * `signed_by{issuer, kid, alg:"EdDSA"}` + `signature{format:"ed25519-jcs-v1", value}`.
 * Verification is strict and names what is wrong with a stable code: `unsigned_bundle`,
 * `unsupported_signature_format`, `unknown_signing_key`, `invalid_bundle_signature`.
 */
import { FormatError } from '../errors.js';
import { decodeBase64url, encodeBase64url } from '../encoding.js';
import { getEd25519Backend, type Ed25519Backend, type Ed25519PrivateKey, type Ed25519PublicKey } from '../ed25519/backend.js';
import { canonicalJsonBytes } from './jcs.js';

export const SIGNATURE_FORMAT = 'ed25519-jcs-v1';
export const SIGNATURE_ALG = 'EdDSA';
/** What `bundle build`, `merge-source` and `remove-source` write: explicitly not a signature. */
export const UNSIGNED_FORMAT = 'unsigned-skeleton';
export const UNSIGNED_SIGNED_BY = { issuer: 'local://trustplane.bundle.build', kid: 'unsigned-skeleton', alg: 'none' } as const;
export const UNSIGNED_SIGNATURE = { format: UNSIGNED_FORMAT, value: 'local-build-placeholder-not-a-production-signature' } as const;
/** The development flag that lets a loader accept unsigned or badly signed bundles. Never in production. */
export const DEV_ALLOW_UNSIGNED_FLAG = '--dev-allow-unsigned-bundles';

/** `signed_by` as this module writes it; `signed_at` (RFC 3339) is our extension, covered by the signature. */
export interface DocumentSigner {
  issuer: string;
  kid: string;
  alg: string;
  signed_at?: string;
}

export interface DocumentSignature {
  format: string;
  value: string;
}

export type SignedDocument<T> = Omit<T, 'signed_by' | 'signature'> & { signed_by: DocumentSigner; signature: DocumentSignature };

export interface SignDocumentOptions {
  /** The bundle-signing key id verifiers look the public key up by. */
  kid: string;
  /** Who signed (a URI or name; informational, covered by the signature). */
  signerIssuer: string;
  /** RFC 3339 time of signing, recorded as `signed_by.signed_at` (extension). */
  signedAt?: string;
  backend?: Ed25519Backend;
}

export interface VerifiedDocumentSignature {
  readonly kid: string;
  readonly issuer: string;
  readonly signedAt: string | undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The bytes a bundle signature covers: JCS of the document without `signature`. */
export function documentSigningInput(doc: Readonly<Record<string, unknown>>): Buffer {
  // A null-prototype copy: on a plain object, `rest['__proto__'] = 1` would set nothing, and a
  // member `"__proto__"` added to a signed document would escape the signed bytes.
  const rest = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(doc)) if (k !== 'signature') rest[k] = v;
  return canonicalJsonBytes(rest);
}

/** A new, signed copy of `doc` (the input is not modified); any previous signature is replaced. */
export function signDocument<T extends object>(doc: T, privateKey: Ed25519PrivateKey, opts: SignDocumentOptions): SignedDocument<T> {
  if (typeof opts.kid !== 'string' || opts.kid === '' || typeof opts.signerIssuer !== 'string' || opts.signerIssuer === '') {
    throw new TypeError('signDocument needs a non-empty kid and signerIssuer');
  }
  if (opts.kid === UNSIGNED_SIGNED_BY.kid) throw new TypeError(`"${UNSIGNED_SIGNED_BY.kid}" is reserved for unsigned skeletons`);
  const signedBy: DocumentSigner = { issuer: opts.signerIssuer, kid: opts.kid, alg: SIGNATURE_ALG };
  if (opts.signedAt !== undefined) signedBy.signed_at = opts.signedAt;
  const unsigned = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(doc)) if (k !== 'signature' && k !== 'signed_by') unsigned[k] = structuredClone(v);
  unsigned['signed_by'] = signedBy;
  const backend = opts.backend ?? getEd25519Backend();
  const sig = backend.sign(privateKey, documentSigningInput(unsigned));
  return { ...unsigned, signature: { format: SIGNATURE_FORMAT, value: encodeBase64url(sig) } } as unknown as SignedDocument<T>;
}

/** Whether a document carries the unsigned-skeleton marker (or no signature at all). */
export function isUnsignedDocument(doc: Readonly<Record<string, unknown>>): boolean {
  const sig = doc['signature'];
  const by = doc['signed_by'];
  return !isObject(sig) || !isObject(by) || sig['format'] === UNSIGNED_FORMAT || by['alg'] === 'none';
}

/**
 * Verify a document's signature against the configured bundle-signing keys (kid → key; several
 * may be trusted at once, so signing keys can rotate). Throws `FormatError` with one of the
 * codes above; returns the signer on success.
 */
export function verifyDocumentSignature(
  doc: Readonly<Record<string, unknown>>,
  trustedKeys: ReadonlyMap<string, Ed25519PublicKey>,
  opts: { backend?: Ed25519Backend } = {},
): VerifiedDocumentSignature {
  const sig = doc['signature'];
  const by = doc['signed_by'];
  if (sig === undefined) throw new FormatError('unsigned_bundle', 'the document has no signature');
  if (!isObject(sig)) throw new FormatError('unsupported_signature_format', 'signature must be an object {format, value}');
  if (sig['format'] === UNSIGNED_FORMAT) throw new FormatError('unsigned_bundle', `the document is an unsigned skeleton (signature.format "${UNSIGNED_FORMAT}")`);
  if (by === undefined) throw new FormatError('unsigned_bundle', 'the document has no signed_by');
  if (!isObject(by)) throw new FormatError('unsupported_signature_format', 'signed_by must be an object {issuer, kid, alg}');
  if (by['alg'] === 'none') throw new FormatError('unsigned_bundle', 'signed_by.alg is "none"');
  if (sig['format'] !== SIGNATURE_FORMAT) {
    throw new FormatError('unsupported_signature_format', `signature.format ${JSON.stringify(String(sig['format']).slice(0, 64))} is not ${SIGNATURE_FORMAT}`);
  }
  if (by['alg'] !== SIGNATURE_ALG) throw new FormatError('unsupported_signature_format', `signed_by.alg ${JSON.stringify(String(by['alg']).slice(0, 64))} is not ${SIGNATURE_ALG}`);
  const kid = by['kid'];
  const issuer = by['issuer'];
  if (typeof kid !== 'string' || kid === '') throw new FormatError('unknown_signing_key', 'signed_by.kid is missing');
  if (typeof issuer !== 'string' || issuer === '') throw new FormatError('unsupported_signature_format', 'signed_by.issuer must be a non-empty string');
  const signedAt = by['signed_at'];
  if (signedAt !== undefined && typeof signedAt !== 'string') throw new FormatError('unsupported_signature_format', 'signed_by.signed_at must be a string');
  const key = trustedKeys.get(kid);
  if (key === undefined) throw new FormatError('unknown_signing_key', `signing key ${JSON.stringify(kid.slice(0, 128))} is not among the configured bundle-signing keys`);
  const value = sig['value'];
  let raw: Buffer;
  try {
    if (typeof value !== 'string') throw new FormatError('invalid_base64url', 'not a string');
    raw = decodeBase64url(value, 86, 'signature.value');
  } catch {
    throw new FormatError('invalid_bundle_signature', 'signature.value is not base64url of 64 bytes');
  }
  let input: Buffer;
  try {
    input = documentSigningInput(doc);
  } catch (err) {
    throw new FormatError('invalid_bundle_signature', `the document cannot be canonicalized: ${err instanceof Error ? err.message : String(err)}`);
  }
  const backend = opts.backend ?? getEd25519Backend();
  if (raw.length !== 64 || !backend.verify(key, input, raw)) {
    throw new FormatError('invalid_bundle_signature', `the signature does not verify with signing key ${JSON.stringify(kid.slice(0, 128))}`);
  }
  return { kid, issuer, signedAt };
}
