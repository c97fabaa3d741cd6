/**
 * Route policy and trust material (SPEC §4, §9.3), compiled once per load into lookup
 * structures the verifier uses on every request: issuer keys by kid (imported once), routes by
 * id and by method + path, revocations as sets. Compilation validates structure and names the
 * JSON path of anything wrong.
 */
import { FormatError } from './errors.js';
import { decodeBase64url } from './encoding.js';
import { getEd25519Backend, type Ed25519Backend, type Ed25519PublicKey } from './ed25519/backend.js';
import { isSignerClass, type SignerClass } from './signer-classes.js';
import { canonicalAllowList } from './transcript.js';

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
}

export interface TrustIssuer {
  issuer: string;
  trust_domain: string;
  source_type: SourceType;
  keys: TrustKey[];
  jwks_uri?: string;
}

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
}

export interface CompiledPolicy {
  readonly policyId: string;
  readonly policyVersion: number;
  readonly keysByKid: ReadonlyMap<string, CompiledKey>;
  readonly routesById: ReadonlyMap<string, CompiledRoute>;
  /** method → path → route, for template-free paths. */
  readonly exactRoutes: ReadonlyMap<string, ReadonlyMap<string, CompiledRoute>>;
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

function templateSegments(template: string, path: string): (string | null)[] {
  if (!template.startsWith('/')) fail(path, 'must start with /');
  return template
    .slice(1)
    .split('/')
    .map((seg) => {
      if (seg.startsWith('{') && seg.endsWith('}') && seg.length > 2) {
        if (/[{}]/.test(seg.slice(1, -1))) fail(path, `invalid parameter segment ${seg}`);
        return null;
      }
      if (/[{}]/.test(seg)) fail(path, `a parameter must be a whole segment: ${seg}`);
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
    iss.keys.forEach((k: TrustKey, j) => {
      const kp = `${p}.keys[${j}]`;
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
      keysByKid.set(kid, { kid, issuer, trustDomain, sourceType: sourceType as SourceType, status, key });
    });
  });

  const apis = new Map<string, { audience: string; scheme: string; authority: string }>();
  if (!Array.isArray(bundle.apis)) fail('policy_bundle.apis', 'must be an array');
  bundle.apis.forEach((api, i) => {
    const p = `policy_bundle.apis[${i}]`;
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
  const templateRoutes = new Map<string, CompiledRoute[]>();
  if (!Array.isArray(bundle.route_groups)) fail('policy_bundle.route_groups', 'must be an array');
  bundle.route_groups.forEach((group, gi) => {
    const gp = `policy_bundle.route_groups[${gi}]`;
    const apiId = reqString(group, 'api_id', gp);
    const api = apis.get(apiId);
    if (api === undefined) fail(`${gp}.api_id`, `unknown api_id ${JSON.stringify(apiId)}`);
    if (!Array.isArray(group.routes)) fail(`${gp}.routes`, 'must be an array');
    group.routes.forEach((r, ri) => {
      const rp = `${gp}.routes[${ri}]`;
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
      };
      routesById.set(routeId, route);
      if (segments.every((s) => s !== null)) {
        let byPath = exactRoutes.get(method);
        if (byPath === undefined) exactRoutes.set(method, (byPath = new Map<string, CompiledRoute>()));
        if (byPath.has(pathTemplate)) fail(`${rp}.path_template`, `${method} ${pathTemplate} is already routed to ${byPath.get(pathTemplate)!.routeId}`);
        byPath.set(pathTemplate, route);
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
    templateRoutes,
    revokedKids,
    revokedJtis,
    revokedSubjects,
  };
}

/**
 * Whether a path segment may stand for a `{name}` template parameter. Not a dot segment (`.`,
 * `..`, also percent-encoded, also with a `;` path parameter after it, which Tomcat and Spring
 * strip before resolving `..;`), and no encoded slash or backslash (`%2F`, `%5C`) or literal
 * backslash: an API or framework that normalizes the path would otherwise route
 * `/v1/orders/..%2Fadmin`, verified as `orders.get`, somewhere outside the route's template.
 */
function isParamValue(s: string): boolean {
  if (s.charCodeAt(0) !== 0x2e /* . */ && s.indexOf('%') === -1 && s.indexOf('\\') === -1) return true;
  if (s.indexOf('\\') !== -1 || /%(?:2f|5c)/i.test(s)) return false;
  const segment = s.replace(/%2e/gi, '.').split(/;|%3b/i)[0];
  return segment !== '.' && segment !== '..';
}

/**
 * Request-mode route resolution: exact paths win over `{name}` templates; method must match. A
 * template parameter matches one non-empty segment that is not a dot segment and holds no
 * encoded slash or backslash (`isParamValue`).
 */
export function resolveRoute(policy: CompiledPolicy, method: string, path: string): CompiledRoute | undefined {
  const exact = policy.exactRoutes.get(method)?.get(path);
  if (exact !== undefined) return exact;
  const templates = policy.templateRoutes.get(method);
  if (templates === undefined || !path.startsWith('/')) return undefined;
  const segs = path.slice(1).split('/');
  outer: for (const route of templates) {
    if (route.segments.length !== segs.length) continue;
    for (let i = 0; i < segs.length; i++) {
      const t = route.segments[i];
      const s = segs[i]!;
      if (t === null) {
        if (s === '' || !isParamValue(s)) continue outer;
      } else if (t !== s) continue outer;
    }
    return route;
  }
  return undefined;
}
