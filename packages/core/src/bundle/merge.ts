/**
 * Non-destructive edits of a trust material + policy bundle pair (SPEC §4): `mergeSource`
 * appends one client (a key, and a source rule on one route); `removeSource` removes one key
 * and its source rules, optionally appending revocations. Pure functions: the inputs are never
 * modified. Every result is an unsigned pair again (to be reviewed and signed), with
 * `policy_version` incremented — so hot reload accepts it — and the bundle's
 * `trust_material_sha256` pin updated; and it is validated exactly as the loader will.
 */
import { FormatError } from '../errors.js';
import { decodeBase64url } from '../encoding.js';
import { getEd25519Backend, type Ed25519Backend } from '../ed25519/backend.js';
import type { PolicyBundle, Revocation, RoutePolicy, SourceRule, SourceType, TrustIssuer, TrustKey, TrustMaterial } from '../policy.js';
import type { SignerClass } from '../signer-classes.js';
import { UNSIGNED_SIGNATURE, UNSIGNED_SIGNED_BY } from './sign.js';
import { compilePair, validatePolicyBundle, validateTrustMaterial } from './schema.js';
import { documentContentSha256 } from './load.js';

export interface BundleEditFiles {
  /** Names of the inputs in error messages. */
  trustMaterialFile?: string;
  policyBundleFile?: string;
  backend?: Ed25519Backend;
}

export interface MergeSourceOptions extends BundleEditFiles {
  issuer: string;
  trustDomain: string;
  kid: string;
  /** base64url of the raw 32-byte Ed25519 public key. */
  publicKey: string;
  routeId: string;
  /** Exactly one of subjectExact and subjectPrefix. */
  subjectExact?: string;
  subjectPrefix?: string;
  requiredKeyBinding: SignerClass;
  /** Default `software_jwks`. */
  sourceType?: SourceType;
  /** Replace a key with the same kid and a source rule with the same selector instead of refusing. */
  replaceExisting?: boolean;
  /**
   * Add the client under an issuer whose other keys could mint its subjects (a key not bound to
   * subjects, or bound to an overlapping selector) instead of refusing `shared_issuer`.
   */
  sharedIssuer?: boolean;
}

export interface RemoveSourceOptions extends BundleEditFiles {
  kid: string;
  /** Also append revocation metadata to the policy bundle. */
  revoke?: boolean;
  reason?: string;
  /** The time recorded as `revoked_at` (ms since the epoch, or a Date). */
  now: number | Date;
  /** Narrow the source rules removed to one route and/or one selector. */
  routeId?: string;
  subjectExact?: string;
  subjectPrefix?: string;
}

export interface BundleEditResult {
  readonly trustMaterial: TrustMaterial;
  readonly policyBundle: PolicyBundle;
  readonly policyVersion: number;
  /** What changed, one line each, for the operator. */
  readonly changes: readonly string[];
}

function refuse(code: string, message: string): never {
  throw new FormatError(code, message);
}

function routesOf(bundle: PolicyBundle): RoutePolicy[] {
  return bundle.route_groups.flatMap((g) => g.routes);
}

function selectorOf(rule: SourceRule): string {
  return rule.subject_exact !== undefined ? `subject_exact ${JSON.stringify(rule.subject_exact)}` : `subject_prefix ${JSON.stringify(rule.subject_prefix ?? '')}`;
}

function sameSelector(a: SourceRule, b: SourceRule): boolean {
  return a.issuer === b.issuer && a.trust_domain === b.trust_domain && a.subject_exact === b.subject_exact && a.subject_prefix === b.subject_prefix;
}

/** A subject selector: one exact subject, or a prefix. */
interface Selector {
  exact?: string | undefined;
  prefix?: string | undefined;
}

/** Whether some subject matches both selectors. */
function overlaps(a: Selector, b: Selector): boolean {
  if (a.exact !== undefined) return b.exact !== undefined ? a.exact === b.exact : a.exact.startsWith(b.prefix ?? '');
  if (b.exact !== undefined) return b.exact.startsWith(a.prefix ?? '');
  const [p, q] = [a.prefix ?? '', b.prefix ?? ''];
  return p.startsWith(q) || q.startsWith(p);
}

function checkInputs(trust: TrustMaterial, bundle: PolicyBundle, o: BundleEditFiles): { trust: TrustMaterial; bundle: PolicyBundle } {
  validateTrustMaterial(trust, o.trustMaterialFile);
  validatePolicyBundle(bundle, o.policyBundleFile);
  return { trust: structuredClone(trust), bundle: structuredClone(bundle) };
}

/** Unsigned again, version bumped, pin updated, validated as the loader will. */
function finish(trust: TrustMaterial, bundle: PolicyBundle, o: BundleEditFiles, changes: string[]): BundleEditResult {
  trust.signed_by = { ...UNSIGNED_SIGNED_BY };
  trust.signature = { ...UNSIGNED_SIGNATURE };
  const version = (bundle.policy_version ?? 0) + 1;
  bundle.policy_version = version;
  bundle['trust_material_sha256'] = documentContentSha256(trust);
  bundle.signed_by = { ...UNSIGNED_SIGNED_BY };
  bundle.signature = { ...UNSIGNED_SIGNATURE };
  const trustFile = `${o.trustMaterialFile ?? 'trust material'} (edited)`;
  const bundleFile = `${o.policyBundleFile ?? 'policy bundle'} (edited)`;
  validateTrustMaterial(trust, trustFile);
  validatePolicyBundle(bundle, bundleFile);
  compilePair(trust, bundle, { trustMaterialFile: trustFile, policyBundleFile: bundleFile, ...(o.backend === undefined ? {} : { backend: o.backend }) });
  changes.push(`policy_version ${version - 1} -> ${version}; both documents are unsigned until signed again`);
  return { trustMaterial: trust, policyBundle: bundle, policyVersion: version, changes };
}

/**
 * Add one client: its key under its issuer in the trust material, and a source rule on one
 * route. Refuses (FormatError) a kid that already exists (`duplicate_kid`) or a rule with the
 * same issuer, trust domain and subject selector on that route (`duplicate_source`) unless
 * `replaceExisting`; an issuer already trusted with another trust domain or source type
 * (`issuer_conflict`); another key of the issuer that could mint the client's subjects
 * (`shared_issuer`, unless `sharedIssuer`); an unknown route (`route_not_found`); a kid that is revoked
 * (`kid_revoked`); a bad public key (`invalid_public_key`).
 */
export function mergeSource(trustIn: TrustMaterial, bundleIn: PolicyBundle, o: MergeSourceOptions): BundleEditResult {
  if ((o.subjectExact === undefined) === (o.subjectPrefix === undefined)) throw new TypeError('mergeSource needs exactly one of subjectExact and subjectPrefix');
  for (const [name, v] of [['issuer', o.issuer], ['trustDomain', o.trustDomain], ['kid', o.kid], ['routeId', o.routeId]] as const) {
    if (typeof v !== 'string' || v === '') throw new TypeError(`mergeSource needs a non-empty ${name}`);
  }
  const { trust, bundle } = checkInputs(trustIn, bundleIn, o);
  const sourceType: SourceType = o.sourceType ?? 'software_jwks';
  const replace = o.replaceExisting === true;
  const changes: string[] = [];
  try {
    (o.backend ?? getEd25519Backend()).importPublicKey(decodeBase64url(o.publicKey, 64, 'public key'));
  } catch (err) {
    refuse('invalid_public_key', `--public-key: ${err instanceof Error ? err.message : 'invalid'}`);
  }
  const route = routesOf(bundle).find((r) => r.route_id === o.routeId);
  if (route === undefined) refuse('route_not_found', `route ${JSON.stringify(o.routeId)} is not in the policy bundle (routes: ${routesOf(bundle).map((r) => r.route_id).join(', ')})`);
  for (const r of [...(trust.revocations ?? []), ...(bundle.revocations ?? [])]) {
    if (r.kid === o.kid) refuse('kid_revoked', `kid ${JSON.stringify(o.kid)} is revoked; give the new key a new kid`);
  }

  // The key.
  const owner = trust.issuers.find((iss) => iss.keys.some((k) => k.kid === o.kid));
  if (owner !== undefined) {
    if (!replace) refuse('duplicate_kid', `kid ${JSON.stringify(o.kid)} already exists (issuer ${JSON.stringify(owner.issuer)}); pass --replace-existing to replace it`);
    owner.keys = owner.keys.filter((k) => k.kid !== o.kid);
    if (owner.keys.length === 0) trust.issuers = trust.issuers.filter((iss) => iss !== owner);
    changes.push(`trust material: replaced key ${o.kid} (was under issuer ${owner.issuer})`);
  }
  let issuer: TrustIssuer | undefined = trust.issuers.find((iss) => iss.issuer === o.issuer);
  if (issuer !== undefined && (issuer.trust_domain !== o.trustDomain || issuer.source_type !== sourceType)) {
    refuse(
      'issuer_conflict',
      `issuer ${JSON.stringify(o.issuer)} is already trusted for trust domain ${issuer.trust_domain} as ${issuer.source_type}, not ${o.trustDomain} as ${sourceType}; its other keys depend on that entry`,
    );
  }
  // The client's key asserts only the client's subjects (SPEC §3 self-issued passports: the
  // key signs passports for itself). Any other key of the issuer that could mint those subjects
  // (one bound to no subject, e.g. an issuer service's, or an overlapping binding of another
  // client) would let its holder be forwarded as this client.
  const selector: Selector = o.subjectExact !== undefined ? { exact: o.subjectExact } : { prefix: o.subjectPrefix };
  const key: TrustKey = { kid: o.kid, alg: 'EdDSA', public_key_b64url: o.publicKey, ...(o.subjectExact !== undefined ? { subject_exact: o.subjectExact } : { subject_prefix: o.subjectPrefix! }) };
  if (issuer !== undefined && o.sharedIssuer !== true) {
    for (const other of issuer.keys) {
      const bound: Selector = { exact: other.subject_exact, prefix: other.subject_prefix };
      const unbound = bound.exact === undefined && bound.prefix === undefined;
      const same = bound.exact === selector.exact && bound.prefix === selector.prefix;
      if (unbound || (!same && overlaps(bound, selector))) {
        refuse(
          'shared_issuer',
          `issuer ${JSON.stringify(o.issuer)} already has key ${JSON.stringify(other.kid)}${unbound ? ', bound to no subject,' : ` (bound to ${other.subject_exact ?? `${other.subject_prefix ?? ''}*`})`} which could mint passports as ${o.subjectExact ?? `${o.subjectPrefix ?? ''}*`}: give this client its own --issuer (recommended), or pass --shared-issuer`,
        );
      }
    }
  } else if (issuer !== undefined) {
    changes.push(`warning: --shared-issuer: other keys of issuer ${o.issuer} can mint passports as ${o.subjectExact ?? `${o.subjectPrefix ?? ''}*`}`);
  }
  if (issuer === undefined) {
    issuer = { issuer: o.issuer, trust_domain: o.trustDomain, source_type: sourceType, keys: [key] };
    trust.issuers.push(issuer);
    changes.push(`trust material: added issuer ${o.issuer} (${o.trustDomain}, ${sourceType}) with key ${o.kid}, bound to ${o.subjectExact ?? `${o.subjectPrefix ?? ''}*`}`);
  } else {
    issuer.keys.push(key);
    if (owner === undefined) changes.push(`trust material: added key ${o.kid} to issuer ${o.issuer}`);
  }

  // The source rule.
  const rule: SourceRule = { source_type: sourceType, issuer: o.issuer, trust_domain: o.trustDomain, required_key_binding: o.requiredKeyBinding };
  if (o.subjectExact !== undefined) rule.subject_exact = o.subjectExact;
  else rule.subject_prefix = o.subjectPrefix!;
  const existing = route.allowed_sources.findIndex((s) => sameSelector(s, rule));
  if (existing >= 0) {
    if (!replace) refuse('duplicate_source', `route ${o.routeId} already has a source rule for issuer ${JSON.stringify(o.issuer)} with ${selectorOf(rule)}; pass --replace-existing to replace it`);
    route.allowed_sources[existing] = rule;
    changes.push(`policy bundle: replaced the source rule of route ${o.routeId} for ${o.issuer} ${selectorOf(rule)} (minimum ${o.requiredKeyBinding})`);
  } else {
    route.allowed_sources.push(rule);
    changes.push(`policy bundle: route ${o.routeId} now accepts ${o.issuer} ${selectorOf(rule)} (minimum ${o.requiredKeyBinding})`);
  }
  for (const r of bundle.revocations ?? []) {
    if (r.issuer === o.issuer && r.subject !== undefined && r.subject === o.subjectExact) changes.push(`warning: subject ${r.subject} of ${o.issuer} is revoked in the policy bundle; its requests stay denied`);
  }
  return finish(trust, bundle, o, changes);
}

function rfc3339(now: number | Date): string {
  const d = now instanceof Date ? now : new Date(now);
  if (Number.isNaN(d.getTime())) throw new TypeError('removeSource needs a valid time');
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Remove one key (by kid) and its source rules. When the key was its issuer's last, the issuer
 * and every source rule naming it go; when the issuer keeps other keys, its rules stay unless
 * narrowed by `routeId` / `subjectExact` / `subjectPrefix`. With `revoke`, appends
 * `{kid, issuer, subject?, reason, revoked_at}` to the policy bundle's revocations (`subject`
 * when the removed rules name exactly one exact subject). Refuses an unknown kid
 * (`source_not_found`).
 */
export function removeSource(trustIn: TrustMaterial, bundleIn: PolicyBundle, o: RemoveSourceOptions): BundleEditResult {
  if (typeof o.kid !== 'string' || o.kid === '') throw new TypeError('removeSource needs a kid');
  if (o.subjectExact !== undefined && o.subjectPrefix !== undefined) throw new TypeError('removeSource takes at most one of subjectExact and subjectPrefix');
  const revokedAt = rfc3339(o.now);
  const { trust, bundle } = checkInputs(trustIn, bundleIn, o);
  const changes: string[] = [];
  const issuer = trust.issuers.find((iss) => iss.keys.some((k) => k.kid === o.kid));
  if (issuer === undefined) refuse('source_not_found', `kid ${JSON.stringify(o.kid)} is not in the trust material`);
  issuer.keys = issuer.keys.filter((k) => k.kid !== o.kid);
  const issuerGone = issuer.keys.length === 0;
  if (issuerGone) {
    trust.issuers = trust.issuers.filter((iss) => iss !== issuer);
    changes.push(`trust material: removed key ${o.kid} and issuer ${issuer.issuer} (it was its last key)`);
  } else {
    changes.push(`trust material: removed key ${o.kid} of issuer ${issuer.issuer} (${issuer.keys.length} other key(s) remain)`);
  }
  if (o.routeId !== undefined && !routesOf(bundle).some((r) => r.route_id === o.routeId)) refuse('route_not_found', `route ${JSON.stringify(o.routeId)} is not in the policy bundle`);

  const narrowed = o.routeId !== undefined || o.subjectExact !== undefined || o.subjectPrefix !== undefined;
  const removed: SourceRule[] = [];
  if (issuerGone || narrowed) {
    for (const route of routesOf(bundle)) {
      if (o.routeId !== undefined && route.route_id !== o.routeId) continue;
      route.allowed_sources = route.allowed_sources.filter((s) => {
        const match =
          s.issuer === issuer.issuer &&
          s.trust_domain === issuer.trust_domain &&
          (o.subjectExact === undefined || s.subject_exact === o.subjectExact) &&
          (o.subjectPrefix === undefined || s.subject_prefix === o.subjectPrefix);
        if (match) {
          removed.push(s);
          changes.push(`policy bundle: route ${route.route_id} no longer accepts ${s.issuer} ${selectorOf(s)}`);
        }
        return !match;
      });
    }
  } else {
    changes.push(`policy bundle: source rules of ${issuer.issuer} kept (its other keys still use them; pass a route or subject to remove specific rules)`);
  }
  if (narrowed && removed.length === 0) changes.push('warning: no source rule matched the given route/subject');

  if (o.revoke === true) {
    const entry: Revocation = { kid: o.kid, issuer: issuer.issuer };
    const subjects = [...new Set(removed.flatMap((s) => (s.subject_exact === undefined ? [] : [s.subject_exact])))];
    if (subjects.length === 1) entry.subject = subjects[0]!;
    entry.reason = o.reason ?? 'removed with trustplane bundle remove-source --revoke';
    entry.revoked_at = revokedAt;
    bundle.revocations = [...(bundle.revocations ?? []), entry];
    changes.push(`policy bundle: revoked kid ${o.kid}${entry.subject === undefined ? '' : ` and subject ${entry.subject}`} of ${issuer.issuer}`);
  }
  return finish(trust, bundle, o, changes);
}
