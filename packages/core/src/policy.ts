/**
 * Route policy and trust material (SPEC §4, §9.3), compiled once per load into lookup
 * structures the verifier uses on every request: issuer keys by kid (imported once), routes by
 * id and by method + path, revocations as sets. Compilation validates structure and names the
 * JSON path of anything wrong.
 */
import { FormatError, TrustPlaneError } from './errors.js';
import { decodeBase64url } from './encoding.js';
import { getEd25519Backend, type Ed25519Backend, type Ed25519PublicKey } from './ed25519/backend.js';
import { isSignerClass, type SignerClass } from './signer-classes.js';
import { canonicalAllowList } from './transcript.js';
import { asciiLower } from './text.js';

export const TRUST_MATERIAL_VERSION = 'trustplane-trust-material-v1';
export const POLICY_BUNDLE_VERSION = 'trustplane-bundle-v1';
export const SOURCE_TYPES = ['software_jwks', 'oidc_jwks', 'spiffe_spire'] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];
/** SPEC §9.1: signed when present, if the caller does not declare its own list. */
export const DEFAULT_SIGNED_HEADERS: readonly string[] = ['content-type', 'x-trustplane-nonce'];

export interface TrustKey {
  kid: string;
  alg: 'EdDSA';
  public_key_b64url: string;
  /** `active` (default) and `retiring` verify; `revoked` denies with `revoked`. */
  status?: 'active' | 'retiring' | 'revoked';
  /**
   * Extension: the subjects this key may assert — at most one of the two. A key without either
   * signs for any subject of its issuer (an issuer service or a broker); a self-issuing
   * client's key is bound to its own subject, so two clients under one issuer cannot mint
   * each other's subjects.
   */
  subject_exact?: string;
  subject_prefix?: string;
}

export interface TrustIssuer {
  issuer: string;
  trust_domain: string;
  source_type: SourceType;
  keys: TrustKey[];
  jwks_uri?: string;
  /**
   * Extension: the highest signer class this issuer's passports may claim. Default by source
   * type: `software` for software_jwks and oidc_jwks (a key in a file or an IdP proves nothing
   * about the caller's key storage), `attested_workload` for spiffe_spire (a broker that
   * verified the caller's SVID).
   */
  max_key_binding?: SignerClass;
}

/** The signer class an issuer of each source type may grant when its entry does not say. */
export const DEFAULT_MAX_KEY_BINDING: Readonly<Record<SourceType, SignerClass>> = { software_jwks: 'software', oidc_jwks: 'software', spiffe_spire: 'attested_workload' };

export interface Revocation {
  kid?: string;
  issuer?: string;
  subject?: string;
  jti?: string;
  reason?: string;
  revoked_at?: string;
}

export interface SignedBy {
  issuer: string;
  kid: string;
  alg: string;
}

export interface BundleSignature {
  format: string;
  value: string;
}

export interface TrustMaterial {
  version: typeof TRUST_MATERIAL_VERSION;
  issuers: TrustIssuer[];
  revocations?: Revocation[];
  signed_by?: SignedBy;
  signature?: BundleSignature;
  [extra: string]: unknown;
}

export interface ContextPolicy {
  /** `required_<field>: value` — the passport `ctx.<field>` must equal value. */
  [requirement: string]: string;
}

export interface ProvenancePolicy {
  profile?: string;
  required_spiffe_trust_domain?: string;
  required_posture?: string;
}

export interface SourceRule {
  source_type: SourceType;
  issuer: string;
  trust_domain: string;
  subject_exact?: string;
  subject_prefix?: string;
  required_key_binding?: SignerClass;
  context_policy?: ContextPolicy;
  provenance_policy?: ProvenancePolicy;
}

export interface RoutePolicy {
  route_id: string;
  method: string;
  path_template: string;
  risk?: string;
  required_key_binding?: SignerClass;
  allowed_sources: SourceRule[];
  freshness_class?: string;
  max_staleness_seconds?: number;
  /** SPEC §9.1: header names signed when present (default content-type, x-trustplane-nonce). */
  signed_headers?: string[];
  /** SPEC §9.1: names every declared allow-list must include. */
  required_signed_headers?: string[];
}

export interface ApiPolicy {
  api_id: string;
  audience: string;
  base_url: string;
}

export interface PolicyBundle {
  version: typeof POLICY_BUNDLE_VERSION;
  kind?: string;
  /** Extension: identifies the bundle lineage in audit events. */
  policy_id?: string;
  /** Extension: monotonically increasing; hot reload refuses a lower version. */
  policy_version?: number;
  trust_domain?: string;
  apis: ApiPolicy[];
  route_groups: { route_group_id: string; api_id: string; routes: RoutePolicy[] }[];
  scopes?: { scope: string; route_group_id: string }[];
  default_required_key_binding?: SignerClass;
  default_freshness_class?: string;
  default_max_staleness_seconds?: number;
  revocations?: Revocation[];
  revocation_feed?: Record<string, unknown>;
  signed_by?: SignedBy;
  signature?: BundleSignature;
  [extra: string]: unknown;
}

export interface CompiledKey {
  readonly kid: string;
  readonly issuer: string;
  readonly trustDomain: string;
  readonly sourceType: SourceType;
  readonly status: 'active' | 'retiring' | 'revoked';
  readonly key: Ed25519PublicKey;
  /** The highest signer class a passport under this key may claim (its issuer's). */
  readonly maxKeyBinding: SignerClass;
  /** The subjects the key may assert (`subject_exact` / `subject_prefix`); neither: any. */
  readonly subjectExact: string | undefined;
  readonly subjectPrefix: string | undefined;
}

export interface CompiledRoute {
  readonly routeId: string;
  readonly method: string;
  readonly pathTemplate: string;
  readonly apiId: string;
  readonly audience: string;
  readonly scheme: string;
  readonly authority: string;
  readonly requiredKeyBinding: SignerClass;
  readonly sources: readonly SourceRule[];
  readonly freshnessClass: string;
  readonly maxStalenessSeconds: number | undefined;
  readonly signedHeaders: readonly string[];
  readonly requiredSignedHeaders: readonly string[];
  /** Template segments; `null` marks a `{name}` parameter. */
  readonly segments: readonly (string | null)[];
  /** `segments` with ASCII letters lower-cased, for the case-insensitive reading of a path. */
  readonly foldedSegments: readonly (string | null)[];
}

export interface CompiledPolicy {
  readonly policyId: string;
  readonly policyVersion: number;
  readonly keysByKid: ReadonlyMap<string, CompiledKey>;
  readonly routesById: ReadonlyMap<string, CompiledRoute>;
  /** method → path → route, for template-free paths. */
  readonly exactRoutes: ReadonlyMap<string, ReadonlyMap<string, CompiledRoute>>;
  /** method → lower-cased path → route, for template-free paths. */
  readonly exactRoutesFolded: ReadonlyMap<string, ReadonlyMap<string, CompiledRoute>>;
  /** method → templated routes, most specific first. */
  readonly templateRoutes: ReadonlyMap<string, readonly CompiledRoute[]>;
  readonly revokedKids: ReadonlySet<string>;
  readonly revokedJtis: ReadonlySet<string>;
  /** `issuer\nsubject` */
  readonly revokedSubjects: ReadonlySet<string>;
}

function fail(path: string, what: string): never {
  throw new FormatError('invalid_bundle', `${path}: ${what}`);
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function reqString(obj: Record<string, unknown>, key: string, path: string): string {
  const v = obj[key];
  if (typeof v !== 'string' || v === '') fail(`${path}.${key}`, 'must be a non-empty string');
  return v;
}

function optSignerClass(obj: Record<string, unknown>, key: string, path: string): SignerClass | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (!isSignerClass(v)) fail(`${path}.${key}`, `must be one of software, remote_kms, hardware_local, attested_workload`);
  return v;
}

function parseBaseUrl(url: string, path: string): { scheme: string; authority: string } {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#@]+)(?:\/[^?#]*)?$/.exec(url);
  if (m === null) fail(path, 'must be an absolute URL like https://host[:port] without query or credentials');
  return { scheme: m[1]!.toLowerCase(), authority: m[2]!.toLowerCase() };
}

/** A template literal segment: pchar without escapes (so every reading of it is itself). */
const TEMPLATE_LITERAL = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$/;

function templateSegments(template: string, path: string): (string | null)[] {
  if (!template.startsWith('/')) fail(path, 'must start with /');
  const segs = template.slice(1).split('/');
  return segs.map((seg, i) => {
    if (seg.startsWith('{') && seg.endsWith('}') && seg.length > 2) {
      if (/[{}]/.test(seg.slice(1, -1))) fail(path, `invalid parameter segment ${seg}`);
      return null;
    }
    if (/[{}]/.test(seg)) fail(path, `a parameter must be a whole segment: ${seg}`);
    // The same canonical form requests must have (resolveRoute), so a literal matches itself.
    if (!TEMPLATE_LITERAL.test(seg)) fail(path, `segment ${JSON.stringify(seg)} holds a character outside RFC 3986 pchar, or a percent escape`);
    if (seg === '' && i !== segs.length - 1) fail(path, 'must not hold an empty segment (//)');
    const name = seg.split(';')[0];
    if (name === '.' || name === '..') fail(path, 'must not hold a dot segment');
    return seg;
  });
}

function validateSource(src: unknown, path: string): SourceRule {
  if (typeof src !== 'object' || src === null || Array.isArray(src)) fail(path, 'must be an object');
  const s = src as Record<string, unknown>;
  const sourceType = reqString(s, 'source_type', path);
  if (!(SOURCE_TYPES as readonly string[]).includes(sourceType)) fail(`${path}.source_type`, `must be one of ${SOURCE_TYPES.join(', ')}`);
  reqString(s, 'issuer', path);
  reqString(s, 'trust_domain', path);
  const hasExact = s['subject_exact'] !== undefined;
  const hasPrefix = s['subject_prefix'] !== undefined;
  if (hasExact === hasPrefix) fail(path, 'exactly one of subject_exact and subject_prefix is required');
  if (hasExact) reqString(s, 'subject_exact', path);
  if (hasPrefix) reqString(s, 'subject_prefix', path);
  optSignerClass(s, 'required_key_binding', path);
  const ctx = s['context_policy'];
  if (ctx !== undefined) {
    if (typeof ctx !== 'object' || ctx === null || Array.isArray(ctx)) fail(`${path}.context_policy`, 'must be an object');
    for (const [k, v] of Object.entries(ctx)) {
      if (!k.startsWith('required_') || k.length <= 9) fail(`${path}.context_policy.${k}`, 'keys must be required_<field>');
      if (typeof v !== 'string') fail(`${path}.context_policy.${k}`, 'must be a string');
    }
  }
  const prov = s['provenance_policy'];
  if (prov !== undefined) {
    if (typeof prov !== 'object' || prov === null || Array.isArray(prov)) fail(`${path}.provenance_policy`, 'must be an object');
    for (const [k, v] of Object.entries(prov)) {
      if (!['profile', 'required_spiffe_trust_domain', 'required_posture'].includes(k)) fail(`${path}.provenance_policy.${k}`, 'unknown field');
      if (typeof v !== 'string' || v === '') fail(`${path}.provenance_policy.${k}`, 'must be a non-empty string');
    }
  }
  return s as unknown as SourceRule;
}

function addRevocations(list: unknown, path: string, kids: Set<string>, jtis: Set<string>, subjects: Set<string>): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) fail(path, 'must be an array');
  list.forEach((r: unknown, i) => {
    const p = `${path}[${i}]`;
    if (typeof r !== 'object' || r === null) fail(p, 'must be an object');
    const rv = r as Record<string, unknown>;
    let any = false;
    if (typeof rv['kid'] === 'string' && rv['kid'] !== '') {
      kids.add(rv['kid']);
      any = true;
    }
    if (typeof rv['jti'] === 'string' && rv['jti'] !== '') {
      jtis.add(rv['jti']);
      any = true;
    }
    if (typeof rv['issuer'] === 'string' && typeof rv['subject'] === 'string' && rv['issuer'] !== '' && rv['subject'] !== '') {
      subjects.add(`${rv['issuer']}\n${rv['subject']}`);
      any = true;
    }
    if (!any) fail(p, 'must name a kid, a jti, or an issuer and subject');
  });
}

export interface CompilePolicyOptions {
  backend?: Ed25519Backend;
}

/** Validate and compile a trust material + policy bundle pair. Throws FormatError('invalid_bundle'). */
export function compilePolicy(trust: TrustMaterial, bundle: PolicyBundle, opts: CompilePolicyOptions = {}): CompiledPolicy {
  const backend = opts.backend ?? getEd25519Backend();
  // The documents usually come from parsed JSON, so every field is checked, typed or not.
  if (!isObject(trust)) fail('trust_material', 'must be an object');
  if (!isObject(bundle)) fail('policy_bundle', 'must be an object');
  if ((trust.version as unknown) !== TRUST_MATERIAL_VERSION) fail('trust_material.version', 'must be ' + TRUST_MATERIAL_VERSION);
  if ((bundle.version as unknown) !== POLICY_BUNDLE_VERSION) fail('policy_bundle.version', 'must be ' + POLICY_BUNDLE_VERSION);
  if (!Array.isArray(trust.issuers)) fail('trust_material.issuers', 'must be an array');

  const keysByKid = new Map<string, CompiledKey>();
  trust.issuers.forEach((iss: TrustIssuer, i) => {
    const p = `trust_material.issuers[${i}]`;
    if (typeof iss !== 'object' || iss === null) fail(p, 'must be an object');
    const issuer = reqString(iss as unknown as Record<string, unknown>, 'issuer', p);
    const trustDomain = reqString(iss as unknown as Record<string, unknown>, 'trust_domain', p);
    const sourceType = reqString(iss as unknown as Record<string, unknown>, 'source_type', p);
    if (!(SOURCE_TYPES as readonly string[]).includes(sourceType)) fail(`${p}.source_type`, `must be one of ${SOURCE_TYPES.join(', ')}`);
    if (!Array.isArray(iss.keys)) fail(`${p}.keys`, 'must be an array');
    const maxKeyBinding = optSignerClass(iss as unknown as Record<string, unknown>, 'max_key_binding', p) ?? DEFAULT_MAX_KEY_BINDING[sourceType as SourceType];
    iss.keys.forEach((k: TrustKey, j) => {
      const kp = `${p}.keys[${j}]`;
      if (!isObject(k)) fail(kp, 'must be an object');
      const kid = reqString(k as unknown as Record<string, unknown>, 'kid', kp);
      if (k.alg !== 'EdDSA') fail(`${kp}.alg`, 'must be EdDSA');
      const status = k.status ?? 'active';
      if (!['active', 'retiring', 'revoked'].includes(status)) fail(`${kp}.status`, 'must be active, retiring or revoked');
      if (keysByKid.has(kid)) fail(`${kp}.kid`, `duplicate kid ${JSON.stringify(kid)}`);
      let key: Ed25519PublicKey;
      try {
        key = backend.importPublicKey(decodeBase64url(reqString(k as unknown as Record<string, unknown>, 'public_key_b64url', kp), 64, 'public key'));
      } catch (err) {
        fail(`${kp}.public_key_b64url`, err instanceof Error ? err.message : 'invalid key');
      }
      const kr = k as unknown as Record<string, unknown>;
      if (kr['subject_exact'] !== undefined && kr['subject_prefix'] !== undefined) fail(kp, 'at most one of subject_exact and subject_prefix');
      const subjectExact = kr['subject_exact'] === undefined ? undefined : reqString(kr, 'subject_exact', kp);
      const subjectPrefix = kr['subject_prefix'] === undefined ? undefined : reqString(kr, 'subject_prefix', kp);
      keysByKid.set(kid, { kid, issuer, trustDomain, sourceType: sourceType as SourceType, status, key, maxKeyBinding, subjectExact, subjectPrefix });
    });
  });

  const apis = new Map<string, { audience: string; scheme: string; authority: string }>();
  if (!Array.isArray(bundle.apis)) fail('policy_bundle.apis', 'must be an array');
  bundle.apis.forEach((api, i) => {
    const p = `policy_bundle.apis[${i}]`;
    if (!isObject(api)) fail(p, 'must be an object');
    const id = reqString(api as unknown as Record<string, unknown>, 'api_id', p);
    if (apis.has(id)) fail(`${p}.api_id`, `duplicate api_id ${JSON.stringify(id)}`);
    const audience = reqString(api as unknown as Record<string, unknown>, 'audience', p);
    apis.set(id, { audience, ...parseBaseUrl(reqString(api as unknown as Record<string, unknown>, 'base_url', p), `${p}.base_url`) });
  });

  const defaultBinding = optSignerClass(bundle, 'default_required_key_binding', 'policy_bundle') ?? 'software';
  const defaultFreshness = bundle.default_freshness_class ?? 'bounded';
  const defaultMaxStale = bundle.default_max_staleness_seconds;
  const routesById = new Map<string, CompiledRoute>();
  const exactRoutes = new Map<string, Map<string, CompiledRoute>>();
  const exactRoutesFolded = new Map<string, Map<string, CompiledRoute>>();
  /** method + case-folded shape → route: two routes that only case or a trailing slash tell apart are refused. */
  const shapes = new Map<string, CompiledRoute>();
  const templateRoutes = new Map<string, CompiledRoute[]>();
  if (!Array.isArray(bundle.route_groups)) fail('policy_bundle.route_groups', 'must be an array');
  bundle.route_groups.forEach((group, gi) => {
    const gp = `policy_bundle.route_groups[${gi}]`;
    if (!isObject(group)) fail(gp, 'must be an object');
    const apiId = reqString(group, 'api_id', gp);
    const api = apis.get(apiId);
    if (api === undefined) fail(`${gp}.api_id`, `unknown api_id ${JSON.stringify(apiId)}`);
    if (!Array.isArray(group.routes)) fail(`${gp}.routes`, 'must be an array');
    group.routes.forEach((r, ri) => {
      const rp = `${gp}.routes[${ri}]`;
      if (!isObject(r)) fail(rp, 'must be an object');
      const rr = r as unknown as Record<string, unknown>;
      const routeId = reqString(rr, 'route_id', rp);
      if (routesById.has(routeId)) fail(`${rp}.route_id`, `duplicate route_id ${JSON.stringify(routeId)}`);
      const method = reqString(rr, 'method', rp);
      if (!/^[A-Z]+$/.test(method)) fail(`${rp}.method`, 'must be an upper-case HTTP method');
      const pathTemplate = reqString(rr, 'path_template', rp);
      const segments = templateSegments(pathTemplate, `${rp}.path_template`);
      if (!Array.isArray(r.allowed_sources)) fail(`${rp}.allowed_sources`, 'must be an array');
      const sources = r.allowed_sources.map((s, si) => validateSource(s, `${rp}.allowed_sources[${si}]`));
      const freshnessClass = r.freshness_class ?? defaultFreshness;
      if (typeof freshnessClass !== 'string') fail(`${rp}.freshness_class`, 'must be a string');
      const maxStale = r.max_staleness_seconds ?? defaultMaxStale;
      if (maxStale !== undefined && (typeof maxStale !== 'number' || !Number.isFinite(maxStale))) fail(`${rp}.max_staleness_seconds`, 'must be a number');
      for (const key of ['signed_headers', 'required_signed_headers'] as const) {
        const v = rr[key];
        if (v !== undefined && (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))) fail(`${rp}.${key}`, 'must be an array of header names');
      }
      const route: CompiledRoute = {
        routeId,
        method,
        pathTemplate,
        apiId,
        audience: api.audience,
        scheme: api.scheme,
        authority: api.authority,
        requiredKeyBinding: optSignerClass(rr, 'required_key_binding', rp) ?? defaultBinding,
        sources,
        freshnessClass,
        maxStalenessSeconds: maxStale,
        signedHeaders: canonicalAllowList(r.signed_headers ?? DEFAULT_SIGNED_HEADERS),
        requiredSignedHeaders: canonicalAllowList(r.required_signed_headers ?? []),
        segments,
        foldedSegments: segments.map((seg) => (seg === null ? null : asciiLower(seg))),
      };
      const shape = `${method} ${route.foldedSegments.map((seg) => seg ?? '{}').join('/').replace(/\/$/, '')}`;
      const twin = shapes.get(shape);
      if (twin !== undefined) {
        if (twin.pathTemplate === pathTemplate) fail(`${rp}.path_template`, `${method} ${pathTemplate} is already routed to ${twin.routeId}`);
        fail(`${rp}.path_template`, `${method} ${pathTemplate} differs from route ${twin.routeId} only in letter case, parameter names or a trailing slash: an upstream that ignores them cannot tell the two apart`);
      }
      shapes.set(shape, route);
      routesById.set(routeId, route);
      if (segments.every((s) => s !== null)) {
        let byPath = exactRoutes.get(method);
        if (byPath === undefined) exactRoutes.set(method, (byPath = new Map<string, CompiledRoute>()));
        byPath.set(pathTemplate, route);
        let folded = exactRoutesFolded.get(method);
        if (folded === undefined) exactRoutesFolded.set(method, (folded = new Map<string, CompiledRoute>()));
        folded.set(asciiLower(pathTemplate), route);
      } else {
        let list = templateRoutes.get(method);
        if (list === undefined) templateRoutes.set(method, (list = []));
        list.push(route);
      }
    });
  });
  for (const list of templateRoutes.values()) {
    // Most specific first: at the first differing segment, a literal beats a parameter.
    list.sort((a, b) => {
      const n = Math.max(a.segments.length, b.segments.length);
      for (let i = 0; i < n; i++) {
        const x = a.segments[i] === null ? 1 : 0;
        const y = b.segments[i] === null ? 1 : 0;
        if (x !== y) return x - y;
      }
      return 0;
    });
  }

  const revokedKids = new Set<string>();
  const revokedJtis = new Set<string>();
  const revokedSubjects = new Set<string>();
  addRevocations(trust.revocations, 'trust_material.revocations', revokedKids, revokedJtis, revokedSubjects);
  addRevocations(bundle.revocations, 'policy_bundle.revocations', revokedKids, revokedJtis, revokedSubjects);
  const version = bundle.policy_version ?? 0;
  if (!Number.isSafeInteger(version) || version < 0) fail('policy_bundle.policy_version', 'must be a non-negative integer');
  return {
    policyId: typeof bundle.policy_id === 'string' && bundle.policy_id !== '' ? bundle.policy_id : (bundle.apis[0]?.api_id ?? 'policy'),
    policyVersion: version,
    keysByKid,
    routesById,
    exactRoutes,
    exactRoutesFolded,
    templateRoutes,
    revokedKids,
    revokedJtis,
    revokedSubjects,
  };
}

/** Longest request path route matching looks at (a longer one is refused, never truncated). */
export const MAX_PATH_LENGTH = 4096;

/**
 * RFC 3986 pchar plus `/`: unreserved, sub-delims, `:`, `@` and `%` escapes. Anything else
 * (space, controls, `"<>\^`{|}`, `#`, bytes outside ASCII) has no single reading across
 * upstream stacks — a backslash is a separator to some, `#` starts a fragment to others.
 */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const HEX = /^[0-9A-Fa-f]{2}$/;

function isUnreservedCode(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

function nonCanonical(detail: string): never {
  throw new TrustPlaneError('non_canonical_path', detail);
}

/**
 * The one canonical form a request path must have before any route is matched (RFC 3986 §6.2.2
 * normal form, tightened): pchar bytes only; every `%` a well-formed escape of a character that
 * needs one (an escaped unreserved character such as `%73` for `s` is refused, as are `%2F`,
 * `%5C` and an escaped `%` that starts another escape); no empty segment but a trailing one;
 * no dot segment in any spelling (`.`, `%2e`, `..;x`). Returns whether the path holds a `%`.
 */
function checkCanonicalPath(path: string): boolean {
  if (path.length > MAX_PATH_LENGTH) nonCanonical(`the path is longer than ${MAX_PATH_LENGTH} characters`);
  if (path.charCodeAt(0) !== 0x2f) nonCanonical('the path does not start with /');
  if (!PATH_CHARS.test(path)) nonCanonical('the path holds a character outside RFC 3986 pchar (a space, control, backslash, #, non-ASCII byte, ...): percent-encode it');
  let escapes = false;
  for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
    escapes = true;
    const hex = path.slice(i + 1, i + 3);
    if (!HEX.test(hex)) nonCanonical('the path holds a malformed percent escape');
    const c = parseInt(hex, 16);
    if (isUnreservedCode(c)) nonCanonical(`the path percent-encodes the unreserved character ${JSON.stringify(String.fromCharCode(c))} (send it as is)`);
    if (c === 0x2f || c === 0x5c) nonCanonical('the path holds an encoded slash or backslash (%2F, %5C)');
    if (c === 0x25 && HEX.test(path.slice(i + 3, i + 5))) nonCanonical('the path holds a double-encoded escape (%25 followed by hex digits)');
  }
  const segs = path.split('/');
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i]!;
    if (seg === '') {
      if (i !== segs.length - 1) nonCanonical('the path holds an empty segment (//)');
      continue;
    }
    // `.` is unreserved, so it is never escaped here: a dot segment is `.` or `..`, possibly
    // followed by `;params` (Tomcat and Spring strip them before resolving `..;`).
    const plain = escapes ? decodePath(seg) : seg; // `..%3B` is `..;` once decoded
    const semi = plain.indexOf(';');
    const name = semi === -1 ? plain : plain.slice(0, semi);
    if (name === '.' || name === '..') nonCanonical('the path holds a dot segment (. or ..)');
  }
  return escapes;
}

/** The path with every escape decoded byte for byte (latin-1: templates are ASCII, checked at compile). */
function decodePath(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Each segment without its `;parameters` (as Tomcat and Spring route it). */
function withoutPathParameters(path: string): string {
  return path.replace(/;[^/]*/g, '');
}

/** One reading of a path against the policy: exact paths first, then templates, most specific first. */
function matchRoute(policy: CompiledPolicy, method: string, path: string, fold: boolean): CompiledRoute | undefined {
  const exact = fold ? policy.exactRoutesFolded.get(method)?.get(asciiLower(path)) : policy.exactRoutes.get(method)?.get(path);
  if (exact !== undefined) return exact;
  const templates = policy.templateRoutes.get(method);
  if (templates === undefined) return undefined;
  const segs = (fold ? asciiLower(path) : path).slice(1).split('/');
  outer: for (const route of templates) {
    const literals = fold ? route.foldedSegments : route.segments;
    if (literals.length !== segs.length) continue;
    for (let i = 0; i < segs.length; i++) {
      const t = literals[i];
      const s = segs[i]!;
      if (t === null) {
        if (s === '') continue outer;
      } else if (t !== s) continue outer;
    }
    return route;
  }
  return undefined;
}

const HAS_UPPER = /[A-Z]/;

/**
 * Request-mode route resolution, on the path's one canonical form (see `checkCanonicalPath`;
 * otherwise `non_canonical_path`). Exact paths win over `{name}` templates; the method must
 * match; a parameter matches one non-empty segment.
 *
 * The route must not depend on how the upstream reads the path: the path percent-decoded (Go
 * net/http, Flask, Fastify, Hono), matched ignoring ASCII letter case (Express's default),
 * without `;` parameters (Tomcat, Spring) or without a trailing slash (Express's non-strict
 * routing) — alone or together — must resolve to the same route as the bytes as sent, or the
 * request is refused `non_canonical_path`: `/v1/orders/SEARCH` signed for `/v1/orders/{id}`
 * could run the `/v1/orders/search` handler. A plain lower-case path costs one reading.
 */
export function resolveRoute(policy: CompiledPolicy, method: string, path: string): CompiledRoute | undefined {
  const escapes = checkCanonicalPath(path);
  const route = matchRoute(policy, method, path, false);
  const semicolons = path.indexOf(';') !== -1;
  const trailing = path.length > 1 && path.charCodeAt(path.length - 1) === 0x2f;
  if (!escapes && !semicolons && !trailing && !HAS_UPPER.test(path)) return route;
  const readings = new Set<string>([path]);
  if (escapes) readings.add(decodePath(path));
  for (const r of [...readings]) if (r.indexOf(';') !== -1) readings.add(withoutPathParameters(r));
  for (const r of [...readings]) if (r.length > 1 && r.endsWith('/')) readings.add(r.slice(0, -1));
  for (const r of readings) {
    const plain = r === path ? route : matchRoute(policy, method, r, false);
    const folded = HAS_UPPER.test(r) ? matchRoute(policy, method, r, true) : plain;
    if (plain !== route || folded !== route) {
      const name = (x: CompiledRoute | undefined) => (x === undefined ? 'no route' : x.routeId);
      nonCanonical(`the path resolves to ${name(route)} as sent but to ${name(plain !== route ? plain : folded)} as an upstream may read it (${JSON.stringify(r.slice(0, 256))}${folded !== plain ? ', ignoring case' : ''})`);
    }
  }
  return route;
}
