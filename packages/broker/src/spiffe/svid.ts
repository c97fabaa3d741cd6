/**
 * X509-SVID validation (SPIFFE X509-SVID spec §5): strict parsing of the leaf and its chain,
 * the SPIFFE ID in the one URI SAN, leaf-only key usage, validity of every certificate at the
 * injected time, and RFC 5280 path validation (names and signatures) to a CA of the SVID's own
 * trust domain bundle.
 *
 * Cheap structural checks run before any signature work. The result is a value, never an
 * exception, for any input bytes; only programmer misuse (a bad configured trust domain or
 * selector) throws `TypeError`.
 */
import './reflect-shim.js';
import { createHash } from 'node:crypto';
import {
  BasicConstraintsExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  X509Certificate,
} from '@peculiar/x509';
import { FormatError } from '@trustplane/core';
import { checkCertificateFrame, MAX_CERT_DATA_BYTES } from './der.js';
import {
  checkSelector,
  describeSelector,
  parseSpiffeId,
  selectorMatches,
  trustDomainProblem,
  type SpiffeIdSelector,
} from './spiffe-id.js';

export interface SvidIdentity {
  /** e.g. spiffe://acme.example/ns/prod/sa/orders */
  spiffeId: string;
  /** e.g. acme.example */
  trustDomain: string;
  /** The leaf's validity. */
  notBeforeMs: number;
  notAfterMs: number;
  /** The leaf's serial number, lower-case hex. */
  serialNumber: string;
  /** "sha256:<hex>" of the leaf DER. */
  fingerprintSha256: string;
}

export type SvidFailureCode =
  | 'svid_unavailable'
  | 'svid_malformed'
  | 'svid_spiffe_id_invalid'
  | 'svid_not_leaf'
  | 'svid_key_usage_invalid'
  | 'svid_expired'
  | 'svid_not_yet_valid'
  | 'svid_chain_invalid'
  | 'svid_trust_domain_mismatch'
  | 'svid_id_not_allowed';

export type SvidFailure = { ok: false; code: SvidFailureCode; detail: string };
export type SvidStatus = { ok: true; identity: SvidIdentity } | SvidFailure;

export interface ValidateX509SvidInput {
  /** DER certificates, leaf first, then intermediates in issuing order. */
  chain: readonly Uint8Array[];
  /** DER CA certificates of the trust domain's bundle. */
  bundle: readonly Uint8Array[];
  nowMs: number;
  trustDomain: string;
  selector?: SpiffeIdSelector;
}

/** A valid SVID with the window in which its whole path (leaf, intermediates, anchor) is valid. */
export interface ValidatedSvid {
  ok: true;
  identity: SvidIdentity;
  validFromMs: number;
  validUntilMs: number;
}

export const MAX_CHAIN_CERTS = 10;
export const MAX_BUNDLE_CERTS = 64;

const OID_SUBJECT_KEY_ID = '2.5.29.14';
const OID_KEY_USAGE = '2.5.29.15';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_NAME_CONSTRAINTS = '2.5.29.30';
const OID_AUTHORITY_KEY_ID = '2.5.29.35';
const OID_EXT_KEY_USAGE = '2.5.29.37';
/** Extensions this validator processes; any other extension marked critical is refused (RFC 5280 §4.2). */
const UNDERSTOOD = new Set([OID_SUBJECT_KEY_ID, OID_KEY_USAGE, OID_SUBJECT_ALT_NAME, OID_BASIC_CONSTRAINTS, OID_AUTHORITY_KEY_ID, OID_EXT_KEY_USAGE]);

const HASHES = new Set(['SHA-256', 'SHA-384', 'SHA-512']);
const CURVES = new Set(['P-256', 'P-384']);
const MIN_RSA_BITS = 2048;

interface ParsedCert {
  readonly der: Uint8Array;
  readonly cert: X509Certificate;
  readonly serialHex: string;
  readonly subject: Uint8Array;
  readonly issuer: Uint8Array;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** null when the extension is absent. */
  readonly ca: { ca: boolean; pathLength: number | undefined } | null;
  readonly keyUsage: number | null;
  readonly uris: readonly string[];
  readonly unknownCritical: readonly string[];
  readonly hasNameConstraints: boolean;
}

function fail(code: SvidFailureCode, detail: string): SvidFailure {
  return { ok: false, code, detail };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Parses one DER certificate strictly, or returns why not. */
function parseCert(der: Uint8Array): ParsedCert | string {
  try {
    const { serialHex } = checkCertificateFrame(der);
    const cert = new X509Certificate(der);
    const seen = new Set<string>();
    let ca: ParsedCert['ca'] = null;
    let keyUsage: number | null = null;
    const uris: string[] = [];
    const unknownCritical: string[] = [];
    let hasNameConstraints = false;
    for (const ext of cert.extensions) {
      // RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension.
      if (seen.has(ext.type)) return `duplicate extension ${ext.type}`;
      seen.add(ext.type);
      if (ext.type === OID_BASIC_CONSTRAINTS) {
        if (!(ext instanceof BasicConstraintsExtension)) return 'unparseable basicConstraints';
        ca = { ca: ext.ca, pathLength: ext.pathLength };
      } else if (ext.type === OID_KEY_USAGE) {
        if (!(ext instanceof KeyUsagesExtension)) return 'unparseable keyUsage';
        keyUsage = ext.usages;
      } else if (ext.type === OID_SUBJECT_ALT_NAME) {
        if (!(ext instanceof SubjectAlternativeNameExtension)) return 'unparseable subjectAltName';
        for (const n of ext.names.items) if (n.type === 'url') uris.push(n.value);
      } else if (ext.type === OID_NAME_CONSTRAINTS) {
        hasNameConstraints = true;
      }
      if (ext.critical && !UNDERSTOOD.has(ext.type)) unknownCritical.push(ext.type);
    }
    const notBeforeMs = cert.notBefore.getTime();
    const notAfterMs = cert.notAfter.getTime();
    if (!Number.isFinite(notBeforeMs) || !Number.isFinite(notAfterMs)) return 'bad validity';
    return {
      der,
      cert,
      serialHex,
      subject: new Uint8Array(cert.subjectName.toArrayBuffer()),
      issuer: new Uint8Array(cert.issuerName.toArrayBuffer()),
      notBeforeMs,
      notAfterMs,
      ca,
      keyUsage,
      uris,
      unknownCritical,
      hasNameConstraints,
    };
  } catch (err) {
    // The parsers' messages describe structure only, never key material.
    if (err instanceof FormatError) return err.message.replace(/^svid_malformed: /, '');
    return err instanceof Error ? err.message.slice(0, 200) : 'unparseable certificate';
  }
}

function timeFailure(c: ParsedCert, what: string, nowMs: number): SvidFailure | null {
  if (nowMs < c.notBeforeMs) return fail('svid_not_yet_valid', `${what} is not valid before ${new Date(c.notBeforeMs).toISOString()}`);
  if (nowMs > c.notAfterMs) return fail('svid_expired', `${what} expired at ${new Date(c.notAfterMs).toISOString()}`);
  return null;
}

/** Why `issuer` may not sign certificates, or null. Used for intermediates and bundle CAs. */
function caProblem(issuer: ParsedCert): string | null {
  if (issuer.ca?.ca !== true) return 'is not a CA (basicConstraints cA is not true)';
  if (issuer.keyUsage === null || (issuer.keyUsage & KeyUsageFlags.keyCertSign) === 0) return 'lacks keyCertSign key usage';
  if (issuer.unknownCritical.length > 0) return `has unsupported critical extension ${issuer.unknownCritical.join(',')}`;
  // URI name constraints are not processed here, so a constrained CA is refused rather than
  // trusted beyond its constraints (X509-SVID §4.2 anticipates exactly this).
  if (issuer.hasNameConstraints) return 'has name constraints, which this validator does not process';
  return null;
}

/** Why `issuer`'s key or `child`'s signature algorithm is outside the allow-list, or null. */
function algorithmProblem(child: ParsedCert, issuer: ParsedCert): string | null {
  let sig: { name: string; hash?: unknown };
  let key: { name: string; namedCurve?: unknown; modulusLength?: unknown };
  try {
    sig = child.cert.signatureAlgorithm as { name: string; hash?: unknown };
    key = issuer.cert.publicKey.algorithm as { name: string; namedCurve?: unknown; modulusLength?: unknown };
  } catch {
    return 'unsupported signature or key algorithm';
  }
  const hash = typeof sig.hash === 'object' && sig.hash !== null ? (sig.hash as { name?: unknown }).name : sig.hash;
  switch (sig.name) {
    case 'ECDSA':
      if (!HASHES.has(String(hash))) return `ECDSA with ${String(hash)} is not allowed`;
      if (key.name !== 'ECDSA' || !CURVES.has(String(key.namedCurve))) return 'issuer key is not ECDSA P-256/P-384';
      return null;
    case 'RSASSA-PKCS1-v1_5':
    case 'RSA-PSS':
      if (!HASHES.has(String(hash))) return `${sig.name} with ${String(hash)} is not allowed`;
      if (!key.name.startsWith('RSA') || typeof key.modulusLength !== 'number' || key.modulusLength < MIN_RSA_BITS) {
        return `issuer key is not RSA of at least ${MIN_RSA_BITS} bits`;
      }
      return null;
    case 'Ed25519':
      return key.name === 'Ed25519' ? null : 'issuer key is not Ed25519';
    default:
      return `signature algorithm ${sig.name} is not allowed`;
  }
}

async function signedBy(child: ParsedCert, issuer: ParsedCert): Promise<boolean> {
  try {
    return await child.cert.verify({ publicKey: issuer.cert.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

function fingerprint(der: Uint8Array): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/** Programmer-supplied configuration: a bad value is a TypeError. */
export function checkSvidConfig(trustDomain: string, selector: SpiffeIdSelector | undefined): void {
  const problem = trustDomainProblem(trustDomain);
  if (problem !== null) throw new TypeError(`trust domain ${JSON.stringify(trustDomain)}: ${problem} (give the bare name, e.g. acme.example)`);
  checkSelector(selector, trustDomain);
}

/** Like `validateX509Svid`, also returning the window in which the whole path is valid. */
export async function validateX509SvidDetailed(input: ValidateX509SvidInput): Promise<ValidatedSvid | SvidFailure> {
  const { chain, bundle, nowMs, trustDomain, selector } = input;
  checkSvidConfig(trustDomain, selector);
  if (!Number.isFinite(nowMs)) throw new TypeError('nowMs must be a finite number');

  // Caps before any parsing work.
  if (chain.length === 0) return fail('svid_malformed', 'empty certificate chain');
  if (chain.length > MAX_CHAIN_CERTS) return fail('svid_malformed', `chain has more than ${MAX_CHAIN_CERTS} certificates`);
  if (bundle.length === 0) return fail('svid_malformed', 'empty trust bundle');
  if (bundle.length > MAX_BUNDLE_CERTS) return fail('svid_malformed', `bundle has more than ${MAX_BUNDLE_CERTS} certificates`);
  let total = 0;
  for (const der of [...chain, ...bundle]) total += der.length;
  if (total > MAX_CERT_DATA_BYTES) return fail('svid_malformed', `more than ${MAX_CERT_DATA_BYTES} bytes of certificates`);

  const path: ParsedCert[] = [];
  for (const [i, der] of chain.entries()) {
    const p = parseCert(der);
    if (typeof p === 'string') return fail('svid_malformed', `chain certificate ${i}: ${p}`);
    path.push(p);
  }
  const anchors: ParsedCert[] = [];
  for (const [i, der] of bundle.entries()) {
    const p = parseCert(der);
    if (typeof p === 'string') return fail('svid_malformed', `bundle certificate ${i}: ${p}`);
    anchors.push(p);
  }
  const leaf = path[0] as ParsedCert;

  // X509-SVID §2, §5.2: exactly one URI SAN, a SPIFFE ID with a non-root path.
  if (leaf.uris.length !== 1) return fail('svid_spiffe_id_invalid', `leaf has ${leaf.uris.length} URI SANs; exactly one is required`);
  const id = parseSpiffeId(leaf.uris[0] as string);
  if (typeof id === 'string') return fail('svid_spiffe_id_invalid', `leaf URI SAN is not a SPIFFE ID: ${id}`);
  if (id.path === '') return fail('svid_spiffe_id_invalid', 'leaf SPIFFE ID has no path (it names a trust domain)');
  if (id.trustDomain !== trustDomain) {
    return fail('svid_trust_domain_mismatch', `SPIFFE ID is in trust domain ${id.trustDomain}, not ${trustDomain}`);
  }
  if (!selectorMatches(selector, id.id)) return fail('svid_id_not_allowed', `${id.id} is not ${describeSelector(selector)}`);

  // X509-SVID §4.1, §4.3, §5.2: a leaf, not a signing certificate.
  if (leaf.unknownCritical.length > 0) return fail('svid_malformed', `leaf has unsupported critical extension ${leaf.unknownCritical.join(',')}`);
  if (leaf.ca?.ca === true) return fail('svid_not_leaf', 'leaf has basicConstraints cA=true');
  if (leaf.keyUsage === null) return fail('svid_key_usage_invalid', 'leaf has no keyUsage extension');
  if ((leaf.keyUsage & (KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)) !== 0) {
    return fail('svid_not_leaf', 'leaf has keyCertSign or cRLSign key usage');
  }
  if ((leaf.keyUsage & KeyUsageFlags.digitalSignature) === 0) return fail('svid_key_usage_invalid', 'leaf lacks digitalSignature key usage');

  for (const [i, c] of path.entries()) {
    const t = timeFailure(c, i === 0 ? 'leaf' : `intermediate ${i}`, nowMs);
    if (t !== null) return t;
  }

  // RFC 5280 §6.1: each certificate is issued (name) and signed (key) by the next.
  for (let i = 1; i < path.length; i++) {
    const child = path[i - 1] as ParsedCert;
    const issuer = path[i] as ParsedCert;
    const problem = caProblem(issuer) ?? pathLenProblem(issuer, i - 1) ?? algorithmProblem(child, issuer);
    if (problem !== null) return fail('svid_chain_invalid', `intermediate ${i} ${problem}`);
    if (!bytesEqual(child.issuer, issuer.subject)) return fail('svid_chain_invalid', `certificate ${i - 1} was not issued by intermediate ${i} (names differ)`);
    if (!(await signedBy(child, issuer))) return fail('svid_chain_invalid', `certificate ${i - 1} signature does not verify with intermediate ${i}`);
  }

  // The trust anchor: the top of the chain is itself a bundle CA, or is signed by one.
  const top = path[path.length - 1] as ParsedCert;
  let anchor: ParsedCert | null = null;
  let anchorTimeFailure: SvidFailure | null = null;
  let anchorProblem: string | null = null;
  if (path.length > 1 && anchors.some((a) => bytesEqual(a.der, top.der))) {
    anchor = top;
  } else {
    const below = path.length - 1; // intermediates under the anchor
    for (const a of anchors) {
      if (!bytesEqual(top.issuer, a.subject)) continue;
      const problem = caProblem(a) ?? pathLenProblem(a, below) ?? algorithmProblem(top, a);
      if (problem !== null) {
        anchorProblem ??= `the bundle CA named by the chain ${problem}`;
        continue;
      }
      if (!(await signedBy(top, a))) {
        anchorProblem ??= 'the signature does not verify with the bundle CA of that name';
        continue;
      }
      const t = timeFailure(a, 'trust bundle CA', nowMs);
      if (t === null) {
        anchor = a;
        break;
      }
      anchorTimeFailure ??= t;
    }
  }
  if (anchor === null) {
    const why = anchorProblem ?? `no bundle CA is named ${JSON.stringify(top.cert.issuer)}`;
    return anchorTimeFailure ?? fail('svid_chain_invalid', `chain does not lead to a CA in the ${trustDomain} trust bundle: ${why}`);
  }

  const window = [...path, anchor];
  return {
    ok: true,
    identity: {
      spiffeId: id.id,
      trustDomain: id.trustDomain,
      notBeforeMs: leaf.notBeforeMs,
      notAfterMs: leaf.notAfterMs,
      serialNumber: leaf.serialHex,
      fingerprintSha256: fingerprint(leaf.der),
    },
    validFromMs: Math.max(...window.map((c) => c.notBeforeMs)),
    validUntilMs: Math.min(...window.map((c) => c.notAfterMs)),
  };
}

/** RFC 5280 §4.2.1.9: at most pathLenConstraint non-leaf certificates may follow this CA. */
function pathLenProblem(ca: ParsedCert, intermediatesBelow: number): string | null {
  const max = ca.ca?.pathLength;
  return max !== undefined && intermediatesBelow > max ? `has pathLenConstraint ${max} but ${intermediatesBelow} CA certificates below it` : null;
}

/**
 * Validates an X509-SVID chain against its trust domain's bundle at `nowMs`. Resolves to
 * `{ok:true, identity}` or `{ok:false, code, detail}`; never rejects for any certificate bytes.
 */
export async function validateX509Svid(input: ValidateX509SvidInput): Promise<SvidStatus> {
  const r = await validateX509SvidDetailed(input);
  return r.ok ? { ok: true, identity: r.identity } : r;
}
