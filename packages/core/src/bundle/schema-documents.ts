/**
 * The JSON Schemas (draft 2020-12) of the bundle documents, as data. The published copies are
 * `schemas/*.schema.json` at the repository root; a test keeps those files byte-equal to
 * `JSON.stringify(schema, null, 2)` of these objects, so the loader validates with exactly the
 * schemas the documentation shows. `x-message` is an annotation of ours: the error text the
 * loader prints when a `pattern`, `oneOf` or `anyOf` on that schema fails.
 */

const DRAFT = 'https://json-schema.org/draft/2020-12/schema';

const noControl = '^[^\\u0000-\\u001f\\u007f]+$';

const text = { type: 'string', minLength: 1, maxLength: 2048, pattern: noControl, 'x-message': 'must be a non-empty string without control characters' };
const identifier = { type: 'string', minLength: 1, maxLength: 256, pattern: '^[\\u0021-\\u007e]+$', 'x-message': 'must be 1 to 256 printable ASCII characters without spaces' };
const signerClass = { enum: ['software', 'remote_kms', 'hardware_local', 'attested_workload'] };
const sourceType = { enum: ['software_jwks', 'oidc_jwks', 'spiffe_spire'] };
const publicKey = { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$', 'x-message': 'must be base64url (no padding) of a raw 32-byte Ed25519 public key: 43 characters' };
const freshnessClass = { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,63}$', 'x-message': 'must be a freshness class name: realtime, bounded or offline-ok' };
const seconds = { type: 'number', minimum: 0, maximum: 31_536_000 };
const headerName = { type: 'string', maxLength: 256, pattern: "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$", 'x-message': 'must be an HTTP header name' };
const sha256Hex = { type: 'string', pattern: '^[0-9a-f]{64}$', 'x-message': 'must be 64 lower-case hex characters' };
const rfc3339 = {
  type: 'string',
  pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$',
  'x-message': 'must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z',
};
const annotations = { '^x-': {} };

const signedBy = {
  type: 'object',
  description: 'Who signed. `signed_at` is an extension of ours (covered by the signature).',
  required: ['issuer', 'kid', 'alg'],
  properties: { issuer: text, kid: identifier, alg: { type: 'string', minLength: 1, maxLength: 32 }, signed_at: rfc3339 },
  additionalProperties: false,
};
const signature = {
  type: 'object',
  description: 'format "ed25519-jcs-v1" (SPEC §9.4) or "unsigned-skeleton".',
  required: ['format', 'value'],
  properties: { format: { type: 'string', minLength: 1, maxLength: 64 }, value: { type: 'string', minLength: 1, maxLength: 4096 } },
  additionalProperties: false,
};
const revocation = {
  type: 'object',
  properties: { kid: identifier, issuer: text, subject: text, jti: text, reason: { type: 'string', maxLength: 1024 }, revoked_at: rfc3339 },
  additionalProperties: false,
  anyOf: [{ required: ['kid'] }, { required: ['jti'] }, { required: ['issuer', 'subject'] }],
  'x-message': 'a revocation must name a kid, a jti, or an issuer and a subject',
};
const trustKey = {
  type: 'object',
  required: ['kid', 'alg', 'public_key_b64url'],
  properties: {
    kid: identifier,
    alg: { const: 'EdDSA' },
    public_key_b64url: publicKey,
    status: { enum: ['active', 'retiring', 'revoked'], description: 'active (default) and retiring verify; revoked denies with `revoked`.' },
    subject_exact: { ...text, description: 'Extension: the one subject this key may assert (a self-issuing client).' },
    subject_prefix: { ...text, description: 'Extension: the subject prefix this key may assert.' },
  },
  additionalProperties: false,
  not: { required: ['subject_exact', 'subject_prefix'] },
  'x-message': 'a key takes at most one of subject_exact and subject_prefix',
};
const trustIssuer = {
  type: 'object',
  required: ['issuer', 'trust_domain', 'source_type', 'keys'],
  properties: {
    issuer: text,
    trust_domain: text,
    source_type: { $ref: '#/$defs/source_type' },
    jwks_uri: text,
    keys: { type: 'array', minItems: 1, maxItems: 1000, items: { $ref: '#/$defs/key' } },
    max_key_binding: { $ref: '#/$defs/signer_class', description: 'Extension: the highest signer class passports of this issuer may claim (default: software, or attested_workload for spiffe_spire).' },
  },
  additionalProperties: false,
};
const api = {
  type: 'object',
  required: ['api_id', 'audience', 'base_url'],
  properties: {
    api_id: identifier,
    audience: text,
    base_url: {
      type: 'string',
      maxLength: 2048,
      pattern: '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\\s]+(/[^?#\\s]*)?$',
      'x-message': 'must be an absolute URL like https://host[:port] without query, fragment or credentials',
    },
  },
  additionalProperties: false,
};
const contextPolicy = {
  type: 'object',
  description: '`required_<field>: value`: the passport `ctx.<field>` must equal value (SPEC §9.7).',
  maxProperties: 64,
  propertyNames: { pattern: '^required_[A-Za-z0-9_.-]+$', 'x-message': 'property name must be required_<field>' },
  additionalProperties: { type: 'string', maxLength: 1024 },
};
const provenancePolicy = {
  type: 'object',
  properties: { profile: text, required_spiffe_trust_domain: text, required_posture: text },
  additionalProperties: false,
};
const subjectChoice = {
  oneOf: [{ required: ['subject_exact'] }, { required: ['subject_prefix'] }],
  'x-message': 'exactly one of subject_exact and subject_prefix is required',
};
const sourceProperties = {
  source_type: { $ref: '#/$defs/source_type' },
  issuer: text,
  trust_domain: text,
  subject_exact: text,
  subject_prefix: text,
  required_key_binding: { $ref: '#/$defs/signer_class' },
  context_policy: contextPolicy,
  provenance_policy: provenancePolicy,
};
const sourceRule = { type: 'object', required: ['source_type', 'issuer', 'trust_domain'], properties: sourceProperties, additionalProperties: false, ...subjectChoice };
function routeSchema(sourceRef: string): Record<string, unknown> {
  return {
    type: 'object',
    required: ['route_id', 'method', 'path_template', 'allowed_sources'],
    properties: {
      route_id: identifier,
      method: { type: 'string', maxLength: 32, pattern: '^[A-Z]+$', 'x-message': 'must be an upper-case HTTP method such as GET or POST' },
      path_template: {
        type: 'string',
        maxLength: 2048,
        pattern: '^/[^?#\\s]*$',
        'x-message': 'must start with / and hold no query, fragment or whitespace; {name} matches one segment',
      },
      risk: { type: 'string', maxLength: 64 },
      required_key_binding: { $ref: '#/$defs/signer_class' },
      freshness_class: { $ref: '#/$defs/freshness_class' },
      max_staleness_seconds: seconds,
      signed_headers: { type: 'array', maxItems: 32, items: headerName, description: 'Extension (SPEC §9.1).' },
      required_signed_headers: { type: 'array', maxItems: 32, items: headerName, description: 'Extension (SPEC §9.1).' },
      allowed_sources: { type: 'array', maxItems: 1000, items: { $ref: sourceRef } },
    },
    additionalProperties: false,
  };
}
const commonDefs = {
  text,
  identifier,
  signer_class: signerClass,
  source_type: sourceType,
  freshness_class: freshnessClass,
  revocation,
  signed_by: signedBy,
  signature,
};
const freeObject = { type: 'object' };

export const TRUST_MATERIAL_SCHEMA_ID = 'urn:trustplane:schema:trust-material-v1';
export const POLICY_BUNDLE_SCHEMA_ID = 'urn:trustplane:schema:policy-bundle-v1';
export const BUNDLE_CONFIG_SCHEMA_ID = 'urn:trustplane:schema:bundle-config-v1';

/** `schemas/trust-material-v1.schema.json` (SPEC §9.3). */
export const TRUST_MATERIAL_SCHEMA = {
  $schema: DRAFT,
  $id: TRUST_MATERIAL_SCHEMA_ID,
  title: 'TrustPlane trust material v1',
  description: 'Issuer public keys by kid (SPEC §9.3; the format is an extension of ours). Signed per SPEC §9.4.',
  type: 'object',
  required: ['version', 'issuers'],
  properties: {
    version: { const: 'trustplane-trust-material-v1' },
    kind: { type: 'string', maxLength: 128 },
    issuers: { type: 'array', maxItems: 10_000, items: { $ref: '#/$defs/issuer' } },
    revocations: { type: 'array', maxItems: 100_000, items: { $ref: '#/$defs/revocation' } },
    signed_by: { $ref: '#/$defs/signed_by' },
    signature: { $ref: '#/$defs/signature' },
  },
  patternProperties: annotations,
  additionalProperties: false,
  $defs: { ...commonDefs, issuer: trustIssuer, key: trustKey },
} as const;

/** `schemas/policy-bundle-v1.schema.json` (SPEC §4, `trustplane-bundle-v1`). */
export const POLICY_BUNDLE_SCHEMA = {
  $schema: DRAFT,
  $id: POLICY_BUNDLE_SCHEMA_ID,
  title: 'TrustPlane policy bundle (trustplane-bundle-v1)',
  description:
    'Routes and the source rules that may call them (SPEC §4). Extensions of ours: policy_id, policy_version, trust_material_sha256, signed_headers, required_signed_headers, signed_by.signed_at.',
  type: 'object',
  required: ['version', 'apis', 'route_groups'],
  properties: {
    version: { const: 'trustplane-bundle-v1' },
    kind: { type: 'string', maxLength: 128 },
    policy_id: { $ref: '#/$defs/identifier', description: 'Extension: the bundle lineage, recorded in audit events.' },
    policy_version: { type: 'integer', minimum: 0, maximum: 9_007_199_254_740_991, description: 'Extension: increases with every change; hot reload refuses a lower one.' },
    trust_material_sha256: { ...sha256Hex, description: 'Extension: SHA-256 of the JCS of the paired trust material without signed_by and signature.' },
    trust_domain: text,
    contract_metadata: freeObject,
    apis: { type: 'array', minItems: 1, maxItems: 1000, items: { $ref: '#/$defs/api' } },
    route_groups: { type: 'array', maxItems: 1000, items: { $ref: '#/$defs/route_group' } },
    scopes: { type: 'array', maxItems: 10_000, items: { $ref: '#/$defs/scope' } },
    default_required_key_binding: { $ref: '#/$defs/signer_class' },
    default_freshness_class: { $ref: '#/$defs/freshness_class' },
    default_max_staleness_seconds: seconds,
    revocations: { type: 'array', maxItems: 100_000, items: { $ref: '#/$defs/revocation' } },
    revocation_feed: freeObject,
    signed_by: { $ref: '#/$defs/signed_by' },
    signature: { $ref: '#/$defs/signature' },
  },
  patternProperties: annotations,
  additionalProperties: false,
  $defs: {
    ...commonDefs,
    api,
    route_group: {
      type: 'object',
      required: ['route_group_id', 'api_id', 'routes'],
      properties: { route_group_id: identifier, api_id: identifier, routes: { type: 'array', maxItems: 10_000, items: { $ref: '#/$defs/route' } } },
      additionalProperties: false,
    },
    route: routeSchema('#/$defs/source_rule'),
    source_rule: sourceRule,
    scope: { type: 'object', required: ['scope', 'route_group_id'], properties: { scope: text, route_group_id: identifier }, additionalProperties: false },
  },
} as const;

/** `schemas/bundle-config-v1.schema.json`: the input of `trustplane bundle build` (ours). */
export const BUNDLE_CONFIG_SCHEMA = {
  $schema: DRAFT,
  $id: BUNDLE_CONFIG_SCHEMA_ID,
  title: 'TrustPlane bundle build configuration v1',
  description: 'One file that `trustplane bundle build` turns into an unsigned trust material and policy bundle.',
  type: 'object',
  required: ['version', 'policy_id', 'apis', 'route_groups'],
  properties: {
    version: { const: 'trustplane-bundle-config-v1' },
    policy_id: { $ref: '#/$defs/identifier' },
    policy_version: { type: 'integer', minimum: 0, maximum: 9_007_199_254_740_991 },
    trust_domain: { ...text, description: 'Default trust_domain of issuers and source rules that omit it.' },
    kind: { type: 'string', maxLength: 128 },
    contract_metadata: freeObject,
    defaults: {
      type: 'object',
      properties: { required_key_binding: { $ref: '#/$defs/signer_class' }, freshness_class: { $ref: '#/$defs/freshness_class' }, max_staleness_seconds: seconds },
      additionalProperties: false,
    },
    issuers: { type: 'array', maxItems: 10_000, items: { $ref: '#/$defs/issuer' } },
    apis: { type: 'array', minItems: 1, maxItems: 1000, items: { $ref: '#/$defs/api' } },
    route_groups: { type: 'array', maxItems: 1000, items: { $ref: '#/$defs/route_group' } },
    revocations: { type: 'array', maxItems: 100_000, items: { $ref: '#/$defs/revocation' } },
    revocation_feed: freeObject,
  },
  patternProperties: annotations,
  additionalProperties: false,
  $defs: {
    ...commonDefs,
    api,
    key: trustKey,
    issuer: {
      type: 'object',
      required: ['issuer', 'source_type'],
      properties: {
        issuer: text,
        trust_domain: text,
        source_type: { $ref: '#/$defs/source_type' },
        jwks_uri: text,
        keys: { type: 'array', minItems: 1, maxItems: 1000, items: { $ref: '#/$defs/key' } },
        max_key_binding: { $ref: '#/$defs/signer_class', description: 'Extension: the highest signer class passports of this issuer may claim (default: software, or attested_workload for spiffe_spire).' },
        jwks: { type: 'object', description: 'An RFC 7517 JWK Set of OKP Ed25519 keys (software_jwks, oidc_jwks).' },
        jwks_file: { ...text, description: 'A JWKS file, relative to the config file; the CLI reads it into `jwks`.' },
      },
      additionalProperties: false,
      oneOf: [{ required: ['keys'] }, { required: ['jwks'] }, { required: ['jwks_file'] }],
      'x-message': 'exactly one of keys, jwks and jwks_file is required',
    },
    route_group: {
      type: 'object',
      required: ['route_group_id', 'api_id', 'routes'],
      properties: {
        route_group_id: identifier,
        api_id: identifier,
        scopes: { type: 'array', maxItems: 1000, items: text },
        routes: { type: 'array', maxItems: 10_000, items: { $ref: '#/$defs/route' } },
      },
      additionalProperties: false,
    },
    route: routeSchema('#/$defs/source'),
    source: {
      type: 'object',
      description: 'A source rule; trust_domain defaults to the top-level one and source_type to its issuer\'s.',
      required: ['issuer'],
      properties: sourceProperties,
      additionalProperties: false,
      ...subjectChoice,
    },
  },
} as const;

/** The schemas and the file names they are published under. */
export const BUNDLE_SCHEMAS = [
  { file: 'trust-material-v1.schema.json', schema: TRUST_MATERIAL_SCHEMA },
  { file: 'policy-bundle-v1.schema.json', schema: POLICY_BUNDLE_SCHEMA },
  { file: 'bundle-config-v1.schema.json', schema: BUNDLE_CONFIG_SCHEMA },
] as const;
