/**
 * A development SPIFFE Workload API endpoint, for demos and tests — NOT a SPIRE replacement: it
 * attests nothing about its callers. It makes real X.509 certificates (CAs, intermediates, leaf
 * X509-SVIDs, with @peculiar/x509 over node's webcrypto) and serves them from a real
 * @grpc/grpc-js server implementing `SpiffeWorkloadAPI.FetchX509SVID` on a Unix socket, from the
 * Workload API proto this package ships (proto/workload.proto). `trustplane demo` uses it to play
 * the same-cluster SPIFFE caller; the tests use it to drive every SVID case over the real protocol.
 *
 * Like SPIRE's agent, it refuses a call without the `workload.spiffe.io: true` metadata
 * with INVALID_ARGUMENT, sends the current SVIDs as soon as a stream opens, and streams every
 * later update; the test drives rotation, stream errors and stream ends by hand.
 */
import type * as X509 from '@peculiar/x509';
import type * as grpc from '@grpc/grpc-js';
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WORKLOAD_API_PROTO_PATH } from './workload-api.js';

// The heavy modules (@peculiar/x509, gRPC) load on first use, so importing the testkit for
// other fixtures costs nothing.
let x509Module: Promise<typeof X509> | undefined;

function loadX509(): Promise<typeof X509> {
  return (x509Module ??= import('./reflect-shim.js').then(() => import('@peculiar/x509')));
}

/** RFC 5280 key usage bits (same values as @peculiar/x509's KeyUsageFlags). */
export const KeyUsage = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
} as const;

export type TestKeyAlg = 'P-256' | 'P-384' | 'Ed25519' | 'RSA';

export interface TestCert {
  readonly der: Uint8Array;
  readonly certificate: X509.X509Certificate;
  readonly keys: webcrypto.CryptoKeyPair;
  readonly alg: TestKeyAlg;
  /** Serial number as written, lower-case hex. */
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface TestSvid extends TestCert {
  /** The leaf's private key, PKCS#8 DER (what the agent sends as x509_svid_key). */
  readonly keyPkcs8: Uint8Array;
}

function keyGenParams(alg: TestKeyAlg): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.Algorithm {
  switch (alg) {
    case 'P-256':
    case 'P-384':
      return { name: 'ECDSA', namedCurve: alg };
    case 'Ed25519':
      return { name: 'Ed25519' };
    case 'RSA':
      return { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
  }
}

function signingAlgorithm(alg: TestKeyAlg): webcrypto.Algorithm | webcrypto.EcdsaParams {
  switch (alg) {
    case 'P-256':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'P-384':
      return { name: 'ECDSA', hash: 'SHA-384' };
    case 'Ed25519':
      return { name: 'Ed25519' };
    case 'RSA':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

async function generateKeys(alg: TestKeyAlg): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(keyGenParams(alg), true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** 16 random bytes, positive, no leading zero octet. */
function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x40;
  return b.toString('hex');
}

const HOUR = 3600_000;

interface CommonCertOptions {
  alg?: TestKeyAlg;
  notBefore?: Date;
  notAfter?: Date;
  serialHex?: string;
  /** Subject common name. */
  commonName?: string;
}

export interface TestCaOptions extends CommonCertOptions {
  trustDomain: string;
  /** Signs this CA (an intermediate); omitted = self-signed root. */
  issuer?: TestCert;
  /** basicConstraints cA; default true. */
  ca?: boolean;
  pathLength?: number;
  /** Key usage bits, or null for no keyUsage extension; default keyCertSign | cRLSign. */
  keyUsage?: number | null;
  /** URI SAN; default spiffe://<trustDomain>; null for none. */
  uri?: string | null;
}

/** A CA certificate (root, or intermediate when `issuer` is given), as SPIRE's CAs look. */
export async function createTestCa(opts: TestCaOptions): Promise<TestCert> {
  const x509 = await loadX509();
  const alg = opts.alg ?? 'P-256';
  const keys = await generateKeys(alg);
  const now = Date.now();
  const notBefore = opts.notBefore ?? new Date(now - HOUR);
  const notAfter = opts.notAfter ?? new Date(now + 24 * HOUR);
  const serialHex = opts.serialHex ?? randomSerialHex();
  const uri = opts.uri === undefined ? `spiffe://${opts.trustDomain}` : opts.uri;
  const extensions: X509.Extension[] = [new x509.BasicConstraintsExtension(opts.ca ?? true, opts.pathLength, true)];
  const keyUsage = opts.keyUsage === undefined ? KeyUsage.keyCertSign | KeyUsage.cRLSign : opts.keyUsage;
  if (keyUsage !== null) extensions.push(new x509.KeyUsagesExtension(keyUsage, true));
  if (uri !== null) extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }]));
  const subject = `O=SPIFFE, CN=${opts.commonName ?? `${opts.trustDomain} ${opts.issuer ? 'intermediate' : 'root'} CA`}`;
  let certificate: X509.X509Certificate;
  if (opts.issuer === undefined) {
    certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialHex, name: subject, notBefore, notAfter, keys, signingAlgorithm: signingAlgorithm(alg), extensions,
    });
  } else {
    certificate = await x509.X509CertificateGenerator.create({
      serialNumber: serialHex,
      subject,
      issuer: opts.issuer.certificate.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: opts.issuer.keys.privateKey,
      signingAlgorithm: signingAlgorithm(opts.issuer.alg),
      extensions,
    });
  }
  return { der: new Uint8Array(certificate.rawData), certificate, keys, alg, serialHex, notBefore, notAfter };
}

export interface TestSvidOptions extends CommonCertOptions {
  issuer: TestCert;
  /** The one URI SAN. Ignored when `uris` is given. */
  spiffeId?: string;
  /** URI SANs exactly as given (zero, two, or a non-SPIFFE URI). */
  uris?: readonly string[];
  dnsNames?: readonly string[];
  /** Adds basicConstraints with this cA value; omitted = no basicConstraints (as SPIRE issues). */
  ca?: boolean;
  /** Key usage bits, or null for none; default digitalSignature | keyEncipherment | keyAgreement (SPIRE's). */
  keyUsage?: number | null;
}

/** A leaf X509-SVID signed by `issuer`. */
export async function createTestSvid(opts: TestSvidOptions): Promise<TestSvid> {
  const x509 = await loadX509();
  const alg = opts.alg ?? 'P-256';
  const keys = await generateKeys(alg);
  const now = Date.now();
  const notBefore = opts.notBefore ?? new Date(now - 60_000);
  const notAfter = opts.notAfter ?? new Date(now + HOUR);
  const serialHex = opts.serialHex ?? randomSerialHex();
  const uris = opts.uris ?? (opts.spiffeId === undefined ? [] : [opts.spiffeId]);
  const extensions: X509.Extension[] = [];
  if (opts.ca !== undefined) extensions.push(new x509.BasicConstraintsExtension(opts.ca, undefined, true));
  const keyUsage = opts.keyUsage === undefined ? KeyUsage.digitalSignature | KeyUsage.keyEncipherment | KeyUsage.keyAgreement : opts.keyUsage;
  if (keyUsage !== null) extensions.push(new x509.KeyUsagesExtension(keyUsage, true));
  const names = [...uris.map((value) => ({ type: 'url' as const, value })), ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value }))];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  extensions.push(new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex,
    subject: `O=SPIRE, CN=${opts.commonName ?? 'svid'}`,
    issuer: opts.issuer.certificate.subjectName,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: opts.issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithm(opts.issuer.alg),
    extensions,
  });
  const keyPkcs8 = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { der: new Uint8Array(certificate.rawData), certificate, keys, alg, serialHex, notBefore, notAfter, keyPkcs8 };
}

/** Concatenated DER, as the Workload API carries chains and bundles. */
export function concatDer(certs: readonly (Uint8Array | { readonly der: Uint8Array })[]): Uint8Array {
  return Buffer.concat(certs.map((c) => (c instanceof Uint8Array ? c : c.der)));
}

// ---------------------------------------------------------------------------------------------
// The development Workload API endpoint.

export interface DevX509Svid {
  spiffeId: string;
  /** Leaf first, then intermediates: concatenated DER, or the certificates. */
  chain: Uint8Array | readonly (Uint8Array | { readonly der: Uint8Array })[];
  /** PKCS#8 DER; default: `keyPkcs8` of the first chain element if it has one, else empty. */
  key?: Uint8Array;
  bundle: Uint8Array | readonly (Uint8Array | { readonly der: Uint8Array })[];
  hint?: string;
}

export interface DevX509SvidResponse {
  svids: readonly DevX509Svid[];
  federatedBundles?: Readonly<Record<string, Uint8Array>>;
}

export interface DevAgentCall {
  /** The call's metadata, each key's values joined by ", ". */
  readonly metadata: Readonly<Record<string, string>>;
  /** Whether it was refused for a missing workload.spiffe.io header. */
  readonly refused: boolean;
}

export interface DevWorkloadApi {
  readonly socketPath: string;
  /** Every FetchX509SVID call so far, in order. */
  readonly calls: readonly DevAgentCall[];
  /** FetchX509SVID streams currently open. */
  openStreams(): number;
  /** Makes `resp` current (sent to streams opened later) and sends it on every open stream. */
  push(resp: DevX509SvidResponse): void;
  /** Forgets the current response (new streams get nothing until the next push). */
  clear(): void;
  /** Ends every open stream with this gRPC status (e.g. grpc.status.UNAVAILABLE). */
  failStreams(code: grpc.status, details: string): void;
  /** Ends every open stream with status OK. */
  endStreams(): void;
  /** Stops the server and removes the socket (and the temporary directory it made). */
  stop(): Promise<void>;
}

export interface DevWorkloadApiOptions {
  /** Default: `agent.sock` in a new temporary directory. */
  socketPath?: string;
  /** Default: this package's proto/workload.proto. */
  protoPath?: string;
  initial?: DevX509SvidResponse;
}


/** A temporary directory for a socket; `remove()` deletes it. */
export function tempSocketDir(): { dir: string; socketPath: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'tp-spire-'));
  return { dir, socketPath: join(dir, 'agent.sock'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function toBytes(v: Uint8Array | readonly (Uint8Array | { readonly der: Uint8Array })[]): Buffer {
  return v instanceof Uint8Array ? Buffer.from(v) : Buffer.from(concatDer(v));
}

function toWire(resp: DevX509SvidResponse): object {
  return {
    svids: resp.svids.map((s) => {
      const first = s.chain instanceof Uint8Array ? undefined : s.chain[0];
      const key = s.key ?? (first !== undefined && 'keyPkcs8' in first ? (first as TestSvid).keyPkcs8 : new Uint8Array(0));
      return { spiffe_id: s.spiffeId, x509_svid: toBytes(s.chain), x509_svid_key: Buffer.from(key), bundle: toBytes(s.bundle), hint: s.hint ?? '' };
    }),
    crl: [],
    federated_bundles: Object.fromEntries(Object.entries(resp.federatedBundles ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
  };
}

/** Starts a development Workload API endpoint on a Unix socket (demos and tests only). */
export async function startDevWorkloadApi(opts: DevWorkloadApiOptions = {}): Promise<DevWorkloadApi> {
  const grpcJs = await import('@grpc/grpc-js');
  const protoLoader = await import('@grpc/proto-loader');
  const temp = opts.socketPath === undefined ? tempSocketDir() : null;
  const socketPath = opts.socketPath ?? (temp as { socketPath: string }).socketPath;
  const def = protoLoader.loadSync(opts.protoPath ?? WORKLOAD_API_PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const service = (grpcJs.loadPackageDefinition(def)['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor).service;

  const calls: DevAgentCall[] = [];
  const open = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  let current: object | null = opts.initial === undefined ? null : toWire(opts.initial);

  const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<unknown>): void => cb({ code: grpcJs.status.UNIMPLEMENTED, details: 'not implemented by the development Workload API' });
  const server = new grpcJs.Server();
  server.addService(service, {
    FetchX509SVID: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      const metadata: Record<string, string> = {};
      for (const k of Object.keys(call.metadata.getMap())) {
        metadata[k] = call.metadata.get(k).map((v) => (typeof v === 'string' ? v : v.toString('base64'))).join(', ');
      }
      // As SPIRE's agent endpoints: without the header, INVALID_ARGUMENT with this exact message.
      const refused = call.metadata.get('workload.spiffe.io').join(',') !== 'true';
      calls.push({ metadata, refused });
      if (refused) {
        call.emit('error', { code: grpcJs.status.INVALID_ARGUMENT, details: 'security header missing from request' });
        return;
      }
      open.add(call);
      const forget = (): void => void open.delete(call);
      call.on('cancelled', forget);
      call.on('finish', forget);
      call.on('error', forget);
      if (current !== null) call.write(current);
    },
    FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpcJs.status.UNIMPLEMENTED, details: 'not implemented by the development Workload API' }),
    FetchJWTSVID: unimplemented,
    FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpcJs.status.UNIMPLEMENTED, details: 'not implemented by the development Workload API' }),
    ValidateJWTSVID: unimplemented,
  });
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${socketPath}`, grpcJs.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });

  const each = (fn: (c: grpc.ServerWritableStream<unknown, unknown>) => void): void => {
    for (const c of [...open]) {
      open.delete(c);
      if (!c.cancelled && !c.destroyed) fn(c);
    }
  };
  return {
    socketPath,
    calls,
    openStreams: () => open.size,
    push(resp) {
      current = toWire(resp);
      for (const c of open) if (!c.cancelled && !c.destroyed) c.write(current);
    },
    clear() {
      current = null;
    },
    failStreams(code, details) {
      each((c) => c.emit('error', { code, details }));
    },
    endStreams() {
      each((c) => c.end());
    },
    async stop() {
      each((c) => c.emit('error', { code: grpcJs.status.UNAVAILABLE, details: 'agent stopping' }));
      await new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 200).unref();
      });
      rmSync(socketPath, { force: true });
      temp?.remove();
    },
  };
}

/**
 * One call for demos: a fresh root CA for `trustDomain`, an X509-SVID for `spiffeId` (valid one
 * hour) and a development Workload API serving it at `socketPath`.
 */
export async function startDevWorkloadApiFor(opts: { trustDomain: string; spiffeId: string; socketPath?: string }): Promise<DevWorkloadApi> {
  const ca = await createTestCa({ trustDomain: opts.trustDomain });
  const svid = await createTestSvid({ issuer: ca, spiffeId: opts.spiffeId });
  return startDevWorkloadApi({ ...(opts.socketPath !== undefined ? { socketPath: opts.socketPath } : {}), initial: { svids: [{ spiffeId: opts.spiffeId, chain: [svid], bundle: [ca] }] } });
}
