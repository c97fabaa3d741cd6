/**
 * `bundle build`: one configuration document (`trustplane-bundle-config-v1`, see
 * docs/bundles.md and schemas/bundle-config-v1.schema.json) → an unsigned trust material and
 * policy bundle. Pure (no I/O: a `jwks_file` must be read by the caller into `jwks`) and
 * deterministic: the same configuration gives the same bytes. It validates everything — the
 * configuration's schema, then the outputs' schemas and `compilePolicy`, then what would make
 * a rule dead or fail closed at run time (an undeclared issuer, a trust domain or source type
 * that differs from the issuer's, an unknown freshness class, `bounded` without a maximum).
 */
import { TRUST_MATERIAL_VERSION, POLICY_BUNDLE_VERSION, type PolicyBundle, type RoutePolicy, type SourceRule, type TrustIssuer, type TrustMaterial } from '../policy.js';
import { FormatError } from '../errors.js';
import type { Ed25519Backend } from '../ed25519/backend.js';
import { UNSIGNED_SIGNATURE, UNSIGNED_SIGNED_BY } from './sign.js';
import { compilePair, validateDocument, validatePolicyBundle, validateTrustMaterial } from './schema.js';
import { trustKeysFromJwks } from './jwks.js';
import { documentContentSha256 } from './load.js';
import { formatPolicyBundle, formatTrustMaterial } from './format.js';
import { BundleFormatError, type BundleProblem } from './problems.js';

export const BUNDLE_CONFIG_VERSION = 'trustplane-bundle-config-v1';
/** Freshness classes of SPEC §4 (`offline_ok` is an alias of `offline-ok`). */
export const FRESHNESS_CLASSES: readonly string[] = ['realtime', 'bounded', 'offline-ok', 'offline_ok'];

export interface BuildBundlesOptions {
  /** Name of the configuration in error messages. */
  configFile?: string;
  /** Names of the outputs in error messages. */
  trustMaterialFile?: string;
  policyBundleFile?: string;
  /**
   * Pin the bundle to the built trust material with `trust_material_sha256` (default true).
   * Leave it out only when the trust material is not written with the bundle.
   */
  pin?: boolean;
  backend?: Ed25519Backend;
}

export interface BuiltBundles {
  readonly trustMaterial: TrustMaterial;
  readonly policyBundle: PolicyBundle;
  /** The exact file contents (2-space JSON, fixed member order, trailing newline). */
  readonly trustMaterialText: string;
  readonly policyBundleText: string;
  /** Notes for the operator (JWKS keys skipped, …). */
  readonly notes: readonly string[];
}

interface ConfigIssuer {
  issuer: string;
  trust_domain?: string;
  source_type: TrustIssuer['source_type'];
  jwks_uri?: string;
  keys?: TrustIssuer['keys'];
  jwks?: unknown;
  jwks_file?: string;
}
type ConfigSource = Omit<SourceRule, 'source_type' | 'trust_domain'> & { source_type?: SourceRule['source_type']; trust_domain?: string };
type ConfigRoute = Omit<RoutePolicy, 'allowed_sources'> & { allowed_sources: ConfigSource[] };
interface BundleConfig {
  version: string;
  policy_id: string;
  policy_version?: number;
  trust_domain?: string;
  kind?: string;
  contract_metadata?: Record<string, unknown>;
  defaults?: { required_key_binding?: PolicyBundle['default_required_key_binding']; freshness_class?: string; max_staleness_seconds?: number };
  issuers?: ConfigIssuer[];
  apis: PolicyBundle['apis'];
  route_groups: { route_group_id: string; api_id: string; scopes?: string[]; routes: ConfigRoute[] }[];
  revocations?: PolicyBundle['revocations'];
  revocation_feed?: Record<string, unknown>;
  [annotation: `x-${string}`]: unknown;
}

/** Build the unsigned skeletons from a configuration. Throws BundleFormatError listing every problem. */
export function buildBundles(config: unknown, opts: BuildBundlesOptions = {}): BuiltBundles {
  const file = opts.configFile ?? 'bundle config';
  validateDocument('bundle_config', config, file);
  const c = structuredClone(config) as BundleConfig;
  const problems: BundleProblem[] = [];
  const notes: string[] = [];
  const problem = (pointer: string, message: string): void => {
    problems.push({ file, pointer, message });
  };

  // Trust material: one entry per issuer, keys given inline or as a JWK Set.
  const issuers: TrustIssuer[] = [];
  const byIssuer = new Map<string, TrustIssuer>();
  (c.issuers ?? []).forEach((ci, i) => {
    const at = `/issuers/${i}`;
    const trustDomain = ci.trust_domain ?? c.trust_domain;
    if (trustDomain === undefined) problem(`${at}/trust_domain`, 'is required (there is no top-level trust_domain to default to)');
    if (byIssuer.has(ci.issuer)) problem(`${at}/issuer`, `duplicate issuer ${JSON.stringify(ci.issuer)}: list all its keys in one entry`);
    let keys = ci.keys;
    if (ci.jwks_file !== undefined) problem(`${at}/jwks_file`, 'must be read into "jwks" by the caller (the trustplane CLI does this)');
    if (ci.jwks !== undefined) {
      try {
        const got = trustKeysFromJwks(ci.jwks, opts.backend);
        keys = got.keys;
        for (const s of got.skipped) notes.push(`${file}: ${at}/jwks${s}: skipped`);
      } catch (err) {
        if (!(err instanceof FormatError)) throw err;
        problem(`${at}/jwks`, err.message.replace(/^invalid_jwks: /, 'invalid JWKS: '));
      }
    }
    const entry: TrustIssuer = {
      issuer: ci.issuer,
      trust_domain: trustDomain ?? '',
      source_type: ci.source_type,
      ...(ci.jwks_uri === undefined ? {} : { jwks_uri: ci.jwks_uri }),
      keys: keys ?? [],
    };
    // Registered even when its keys failed (a problem is already recorded), so its rules do not cascade.
    if (!byIssuer.has(ci.issuer)) byIssuer.set(ci.issuer, entry);
    issuers.push(entry);
  });
  const trustMaterial: TrustMaterial = { version: TRUST_MATERIAL_VERSION, issuers, signed_by: { ...UNSIGNED_SIGNED_BY }, signature: { ...UNSIGNED_SIGNATURE } };

  // Policy bundle: routes as given, source rules completed from their issuer.
  const defaults = c.defaults ?? {};
  const scopes: { scope: string; route_group_id: string }[] = [];
  const routeGroups = c.route_groups.map((g, gi) => {
    for (const scope of g.scopes ?? []) scopes.push({ scope, route_group_id: g.route_group_id });
    return {
      route_group_id: g.route_group_id,
      api_id: g.api_id,
      routes: g.routes.map((r, ri) => {
        const at = `/route_groups/${gi}/routes/${ri}`;
        const fc = r.freshness_class ?? defaults.freshness_class ?? 'bounded';
        if (!FRESHNESS_CLASSES.includes(fc)) problem(`${at}/freshness_class`, `unknown freshness class ${JSON.stringify(fc)}: use realtime, bounded or offline-ok (it would fail closed with bundle_freshness_unknown)`);
        const max = r.max_staleness_seconds ?? defaults.max_staleness_seconds;
        if (fc === 'bounded' && !(max !== undefined && max > 0)) {
          problem(`${at}/max_staleness_seconds`, 'a bounded route needs a positive max_staleness_seconds (here or in defaults); without one it fails closed');
        }
        const sources = r.allowed_sources.map((s, si): SourceRule => {
          const sp = `${at}/allowed_sources/${si}`;
          const iss = byIssuer.get(s.issuer);
          if (iss === undefined) problem(`${sp}/issuer`, `issuer ${JSON.stringify(s.issuer)} is not declared in /issuers, so no key could ever match this rule`);
          const sourceType = s.source_type ?? iss?.source_type ?? 'software_jwks';
          const trustDomain = s.trust_domain ?? iss?.trust_domain ?? c.trust_domain;
          if (trustDomain === undefined) problem(`${sp}/trust_domain`, 'is required (no issuer or top-level trust_domain to default to)');
          if (iss !== undefined && sourceType !== iss.source_type) problem(`${sp}/source_type`, `${sourceType} differs from issuer ${JSON.stringify(iss.issuer)}'s ${iss.source_type}: the rule could never match`);
          if (iss !== undefined && iss.trust_domain !== '' && trustDomain !== undefined && trustDomain !== iss.trust_domain) {
            problem(`${sp}/trust_domain`, `${trustDomain} differs from issuer ${JSON.stringify(iss.issuer)}'s ${iss.trust_domain}: the rule could never match`);
          }
          const rule: SourceRule = { source_type: sourceType, issuer: s.issuer, trust_domain: trustDomain ?? '' };
          if (s.subject_exact !== undefined) rule.subject_exact = s.subject_exact;
          if (s.subject_prefix !== undefined) rule.subject_prefix = s.subject_prefix;
          if (s.required_key_binding !== undefined) rule.required_key_binding = s.required_key_binding;
          if (s.context_policy !== undefined) rule.context_policy = s.context_policy;
          if (s.provenance_policy !== undefined) rule.provenance_policy = s.provenance_policy;
          return rule;
        });
        return { ...r, allowed_sources: sources };
      }),
    };
  });
  if (problems.length > 0) throw new BundleFormatError('invalid_bundle', problems);

  const bundle: PolicyBundle = {
    version: POLICY_BUNDLE_VERSION,
    kind: c.kind ?? 'policy_runtime_bundle',
    policy_id: c.policy_id,
    policy_version: c.policy_version ?? 1,
    ...(opts.pin === false ? {} : { trust_material_sha256: documentContentSha256(trustMaterial) }),
    apis: c.apis,
    route_groups: routeGroups,
    revocations: c.revocations ?? [],
    signed_by: { ...UNSIGNED_SIGNED_BY },
    signature: { ...UNSIGNED_SIGNATURE },
  };
  if (c.contract_metadata !== undefined) bundle['contract_metadata'] = c.contract_metadata;
  if (c.trust_domain !== undefined) bundle.trust_domain = c.trust_domain;
  if (scopes.length > 0) bundle.scopes = scopes;
  if (defaults.required_key_binding !== undefined) bundle.default_required_key_binding = defaults.required_key_binding;
  if (defaults.freshness_class !== undefined) bundle.default_freshness_class = defaults.freshness_class;
  if (defaults.max_staleness_seconds !== undefined) bundle.default_max_staleness_seconds = defaults.max_staleness_seconds;
  if (c.revocation_feed !== undefined) bundle.revocation_feed = c.revocation_feed;
  for (const [k, v] of Object.entries(c)) if (k.startsWith('x-')) bundle[k] = v;

  // The outputs must pass exactly what the loader will check.
  const trustFile = opts.trustMaterialFile ?? 'trust material (built)';
  const bundleFile = opts.policyBundleFile ?? 'policy bundle (built)';
  validateTrustMaterial(trustMaterial, trustFile);
  validatePolicyBundle(bundle, bundleFile);
  compilePair(trustMaterial, bundle, { trustMaterialFile: trustFile, policyBundleFile: bundleFile, ...(opts.backend === undefined ? {} : { backend: opts.backend }) });
  return { trustMaterial, policyBundle: bundle, trustMaterialText: formatTrustMaterial(trustMaterial), policyBundleText: formatPolicyBundle(bundle), notes };
}
