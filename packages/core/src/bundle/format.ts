/**
 * The on-disk form of bundle documents: 2-space JSON, one trailing newline, object members in
 * a fixed documented order (known members in the order below, then any others sorted by
 * UTF-16 code units; free-form objects fully sorted). So the same document always gives the
 * same bytes, and a diff of two versions shows only what changed. The order does not matter to
 * signatures, which cover the RFC 8785 form.
 */

interface Shape {
  readonly order: readonly string[];
  /** Member name → shape of that member (for an array member: of its items). */
  readonly children?: Readonly<Record<string, Shape>>;
}

const SIGNED_BY: Shape = { order: ['issuer', 'kid', 'alg', 'signed_at'] };
const SIGNATURE: Shape = { order: ['format', 'value'] };
const REVOCATION: Shape = { order: ['kid', 'issuer', 'subject', 'jti', 'reason', 'revoked_at'] };
const KEY: Shape = { order: ['kid', 'alg', 'public_key_b64url', 'status'] };
const ISSUER: Shape = { order: ['issuer', 'trust_domain', 'source_type', 'jwks_uri', 'keys'], children: { keys: KEY } };
const PROVENANCE: Shape = { order: ['profile', 'required_spiffe_trust_domain', 'required_posture'] };
const SOURCE: Shape = {
  order: ['source_type', 'issuer', 'trust_domain', 'subject_exact', 'subject_prefix', 'required_key_binding', 'context_policy', 'provenance_policy'],
  children: { provenance_policy: PROVENANCE },
};
const ROUTE: Shape = {
  order: [
    'route_id',
    'method',
    'path_template',
    'risk',
    'required_key_binding',
    'freshness_class',
    'max_staleness_seconds',
    'signed_headers',
    'required_signed_headers',
    'allowed_sources',
  ],
  children: { allowed_sources: SOURCE },
};
const API: Shape = { order: ['api_id', 'audience', 'base_url'] };
const GROUP: Shape = { order: ['route_group_id', 'api_id', 'routes'], children: { routes: ROUTE } };
const SCOPE: Shape = { order: ['scope', 'route_group_id'] };

/** Member order of trust material (SPEC §9.3). */
export const TRUST_MATERIAL_SHAPE: Shape = {
  order: ['version', 'kind', 'issuers', 'revocations', 'signed_by', 'signature'],
  children: { issuers: ISSUER, revocations: REVOCATION, signed_by: SIGNED_BY, signature: SIGNATURE },
};

/** Member order of a policy bundle (SPEC §4 order, our extensions after `kind`). */
export const POLICY_BUNDLE_SHAPE: Shape = {
  order: [
    'version',
    'kind',
    'policy_id',
    'policy_version',
    'trust_material_sha256',
    'contract_metadata',
    'trust_domain',
    'apis',
    'route_groups',
    'scopes',
    'default_required_key_binding',
    'default_freshness_class',
    'default_max_staleness_seconds',
    'revocations',
    'revocation_feed',
    'signed_by',
    'signature',
  ],
  children: { apis: API, route_groups: GROUP, scopes: SCOPE, revocations: REVOCATION, signed_by: SIGNED_BY, signature: SIGNATURE },
};

const SORTED: Shape = { order: [] };

function render(value: unknown, shape: Shape, indent: string): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('not a JSON number');
    const s = JSON.stringify(value) as string | undefined;
    if (s === undefined) throw new TypeError(`a ${typeof value} is not JSON data`);
    return s;
  }
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v: unknown) => inner + render(v, shape, inner)).join(',\n')}\n${indent}]`;
  }
  const obj = value as Record<string, unknown>;
  const known = shape.order.filter((k) => obj[k] !== undefined);
  const others = Object.keys(obj)
    .filter((k) => obj[k] !== undefined && !shape.order.includes(k))
    .sort();
  const names = [...known, ...others];
  if (names.length === 0) return '{}';
  const members = names.map((k) => `${inner}${JSON.stringify(k)}: ${render(obj[k], shape.children?.[k] ?? SORTED, inner)}`);
  return `{\n${members.join(',\n')}\n${indent}}`;
}

/** Trust material as its file bytes (text). */
export function formatTrustMaterial(doc: object): string {
  return `${render(doc, TRUST_MATERIAL_SHAPE, '')}\n`;
}

/** A policy bundle as its file bytes (text). */
export function formatPolicyBundle(doc: object): string {
  return `${render(doc, POLICY_BUNDLE_SHAPE, '')}\n`;
}
