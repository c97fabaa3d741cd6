/**
 * JWKS as input for trust material (SPEC §9.3): an RFC 7517 JWK Set whose Ed25519 keys are
 * RFC 8037 OKP keys `{"kty":"OKP","crv":"Ed25519","x":…,"kid":…}`. Keys of other types (an
 * OIDC provider's RSA keys, say) are skipped and reported; a key carrying private material
 * (`d`) is refused outright, as is a set without a single usable Ed25519 key.
 */
import { FormatError } from '../errors.js';
import { decodeBase64url, encodeBase64url } from '../encoding.js';
import { getEd25519Backend, type Ed25519Backend } from '../ed25519/backend.js';
import { TRUST_MATERIAL_VERSION, type TrustKey, type TrustMaterial } from '../policy.js';
import { UNSIGNED_SIGNATURE, UNSIGNED_SIGNED_BY } from './sign.js';

export interface JwksConversionOptions {
  issuer: string;
  trustDomain: string;
  /** JWKS are accepted for `software_jwks` (default) and `oidc_jwks` sources. */
  sourceType?: 'software_jwks' | 'oidc_jwks';
  jwksUri?: string;
  backend?: Ed25519Backend;
}

export interface JwksKeys {
  readonly keys: TrustKey[];
  /** Keys left out, with why (`keys[2]: kty RSA is not OKP Ed25519`). */
  readonly skipped: string[];
}

const MAX_JWKS_KEYS = 1000;

/** A JWK member, quoted for a message whatever its type. */
function show(v: unknown): string {
  return typeof v === 'string' ? v : (JSON.stringify(v) ?? typeof v).slice(0, 64);
}

function fail(what: string): never {
  throw new FormatError('invalid_jwks', what);
}

/** The Ed25519 keys of a JWK Set, as trust-material keys. Throws FormatError('invalid_jwks'). */
export function trustKeysFromJwks(jwks: unknown, backend: Ed25519Backend = getEd25519Backend()): JwksKeys {
  if (typeof jwks !== 'object' || jwks === null || Array.isArray(jwks)) fail('a JWKS must be a JSON object {"keys":[…]}');
  const list = (jwks as Record<string, unknown>)['keys'];
  if (!Array.isArray(list)) fail('/keys: must be an array');
  if (list.length > MAX_JWKS_KEYS) fail(`/keys: more than ${MAX_JWKS_KEYS} keys`);
  const keys: TrustKey[] = [];
  const skipped: string[] = [];
  const kids = new Set<string>();
  list.forEach((jwk: unknown, i) => {
    const at = `/keys/${i}`;
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) fail(`${at}: must be an object`);
    const k = jwk as Record<string, unknown>;
    // Private material never belongs in a verifier's trust (SPEC §8): refuse, do not skip.
    if (k['d'] !== undefined) fail(`${at}: contains private key material ("d"); publish public keys only`);
    if (k['kty'] !== 'OKP' || k['crv'] !== 'Ed25519') {
      skipped.push(`${at}: kty ${show(k['kty'])} crv ${show(k['crv'])} is not OKP Ed25519`);
      return;
    }
    if (k['use'] !== undefined && k['use'] !== 'sig') {
      skipped.push(`${at}: use ${show(k['use'])} is not sig`);
      return;
    }
    if (k['alg'] !== undefined && k['alg'] !== 'EdDSA' && k['alg'] !== 'Ed25519') {
      skipped.push(`${at}: alg ${show(k['alg'])} is not EdDSA`);
      return;
    }
    const kid = k['kid'];
    if (typeof kid !== 'string' || !/^[\u0021-\u007e]{1,256}$/.test(kid)) fail(`${at}/kid: every Ed25519 key needs a kid of 1 to 256 printable ASCII characters`);
    if (kids.has(kid)) fail(`${at}/kid: duplicate kid ${JSON.stringify(kid)}`);
    const x = k['x'];
    if (typeof x !== 'string') fail(`${at}/x: is required`);
    let raw: Buffer;
    try {
      raw = decodeBase64url(x, 43, 'x');
      backend.importPublicKey(raw);
    } catch (err) {
      fail(`${at}/x: ${err instanceof Error ? err.message : 'invalid'}`);
    }
    kids.add(kid);
    keys.push({ kid, alg: 'EdDSA', public_key_b64url: encodeBase64url(raw) });
  });
  if (keys.length === 0) fail(`the JWKS holds no usable Ed25519 key${skipped.length > 0 ? ` (${skipped.join('; ')})` : ''}`);
  return { keys, skipped };
}

/** Trust material (an unsigned skeleton, to be signed) for one issuer whose keys come from a JWK Set. */
export function trustMaterialFromJwks(jwks: unknown, opts: JwksConversionOptions): TrustMaterial {
  const sourceType = opts.sourceType ?? 'software_jwks';
  if (sourceType !== 'software_jwks' && sourceType !== 'oidc_jwks') throw new TypeError('a JWKS is accepted for software_jwks and oidc_jwks sources only');
  if (opts.issuer === '' || opts.trustDomain === '') throw new TypeError('trustMaterialFromJwks needs an issuer and a trust domain');
  const { keys } = trustKeysFromJwks(jwks, opts.backend);
  return {
    version: TRUST_MATERIAL_VERSION,
    issuers: [{ issuer: opts.issuer, trust_domain: opts.trustDomain, source_type: sourceType, ...(opts.jwksUri === undefined ? {} : { jwks_uri: opts.jwksUri }), keys }],
    signed_by: { ...UNSIGNED_SIGNED_BY },
    signature: { ...UNSIGNED_SIGNATURE },
  };
}
