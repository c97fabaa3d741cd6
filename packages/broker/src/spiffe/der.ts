/**
 * Strict DER framing for untrusted certificate bytes from the Workload API: splitting the
 * concatenated DER of `X509SVID.x509_svid` / `X509SVID.bundle`, and the outer shape of an X.509
 * certificate (RFC 5280 §4.1) checked before any parser or signature work.
 *
 * Only definite, minimally encoded lengths are accepted (X.690 §10.1): BER's indefinite form and
 * padded long forms are refused, so two readers can never disagree on where a certificate ends.
 */
import { FormatError } from '@trustplane/core';

/** Refuse more certificate bytes than this in one chain or bundle (and in one response). */
export const MAX_CERT_DATA_BYTES = 1024 * 1024;

const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_SEQUENCE = 0x30;
const TAG_VERSION = 0xa0; // [0] EXPLICIT, constructed

interface Tlv {
  readonly tag: number;
  /** Offset of the first content byte. */
  readonly start: number;
  /** Offset just past the last content byte. */
  readonly end: number;
}

function malformed(detail: string): FormatError {
  return new FormatError('svid_malformed', detail);
}

/** Reads one TLV at `offset` that must end at or before `limit`. */
function readTlv(bytes: Uint8Array, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw malformed('truncated DER element');
  const tag = bytes[offset] as number;
  // High-tag-number form never occurs in the certificate structure read here.
  if ((tag & 0x1f) === 0x1f) throw malformed('unsupported DER tag form');
  const first = bytes[offset + 1] as number;
  let length: number;
  let start: number;
  if (first < 0x80) {
    length = first;
    start = offset + 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw malformed('indefinite length is not DER');
    if (n > 4) throw malformed('DER length too large');
    if (offset + 2 + n > limit) throw malformed('truncated DER length');
    if (bytes[offset + 2] === 0) throw malformed('non-minimal DER length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (bytes[offset + 2 + i] as number);
    if (length < 0x80) throw malformed('non-minimal DER length');
    start = offset + 2 + n;
  }
  const end = start + length;
  if (end > limit) throw malformed('DER length exceeds the data');
  return { tag, start, end };
}

/**
 * Splits concatenated DER (as in `X509SVID.x509_svid` and `X509SVID.bundle`) into its top-level
 * elements. Every element must be a SEQUENCE with a definite, minimal length, and the elements
 * must cover the input exactly. Empty input gives an empty list. Throws `FormatError` with code
 * `svid_malformed` otherwise.
 */
export function splitConcatenatedDer(bytes: Uint8Array): Uint8Array[] {
  if (bytes.length > MAX_CERT_DATA_BYTES) throw malformed(`more than ${MAX_CERT_DATA_BYTES} bytes of DER`);
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const tlv = readTlv(bytes, offset, bytes.length);
    if (tlv.tag !== TAG_SEQUENCE) throw malformed('top-level DER element is not a SEQUENCE');
    out.push(bytes.subarray(offset, tlv.end));
    offset = tlv.end;
  }
  return out;
}

export interface CertificateFrame {
  /** Serial number as lower-case hex, without the sign octet. */
  readonly serialHex: string;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Checks the outer structure of one DER certificate (RFC 5280 §4.1): exactly
 * `SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE, signatureValue BIT STRING }`
 * covering the input; tbsCertificate starting with version v3, a positive serial number of at
 * most 20 octets, and a signature AlgorithmIdentifier byte-identical to the outer one
 * (§4.1.1.2). Throws `FormatError` (`svid_malformed`).
 */
export function checkCertificateFrame(der: Uint8Array): CertificateFrame {
  const cert = readTlv(der, 0, der.length);
  if (cert.tag !== TAG_SEQUENCE || cert.end !== der.length) throw malformed('certificate is not one DER SEQUENCE');
  const tbs = readTlv(der, cert.start, cert.end);
  const sigAlg = readTlv(der, tbs.end, cert.end);
  const sigValue = readTlv(der, sigAlg.end, cert.end);
  if (tbs.tag !== TAG_SEQUENCE || sigAlg.tag !== TAG_SEQUENCE || sigValue.tag !== TAG_BIT_STRING || sigValue.end !== cert.end) {
    throw malformed('certificate is not {tbsCertificate, signatureAlgorithm, signatureValue}');
  }
  const version = readTlv(der, tbs.start, tbs.end);
  if (version.tag !== TAG_VERSION) throw malformed('certificate is not X.509 v3');
  const versionInt = readTlv(der, version.start, version.end);
  if (versionInt.tag !== TAG_INTEGER || versionInt.end !== version.end || versionInt.end - versionInt.start !== 1 || der[versionInt.start] !== 2) {
    throw malformed('certificate is not X.509 v3');
  }
  const serial = readTlv(der, version.end, tbs.end);
  const serialLen = serial.end - serial.start;
  if (serial.tag !== TAG_INTEGER || serialLen === 0) throw malformed('bad serial number');
  const s0 = der[serial.start] as number;
  if (s0 & 0x80) throw malformed('negative serial number');
  if (serialLen > 1 && s0 === 0 && ((der[serial.start + 1] as number) & 0x80) === 0) throw malformed('non-minimal serial number');
  const serialBytes = der.subarray(s0 === 0 && serialLen > 1 ? serial.start + 1 : serial.start, serial.end);
  if (serialBytes.length > 20) throw malformed('serial number longer than 20 octets');
  const innerAlg = readTlv(der, serial.end, tbs.end);
  if (innerAlg.tag !== TAG_SEQUENCE) throw malformed('bad tbsCertificate signature algorithm');
  if (!bytesEqual(der.subarray(serial.end, innerAlg.end), der.subarray(tbs.end, sigAlg.end))) {
    throw malformed('tbsCertificate.signature differs from signatureAlgorithm');
  }
  return { serialHex: Buffer.from(serialBytes).toString('hex') };
}
