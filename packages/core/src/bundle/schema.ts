/**
 * Validation of the bundle documents: first the JSON Schemas (draft 2020-12, validated with
 * Ajv), each error turned into `FILE: /json/pointer: what is wrong`; then `compilePolicy` for
 * what a schema cannot say (duplicate kids and route ids, unknown api ids, bad Ed25519 keys…),
 * its dotted paths turned into JSON pointers as well. Loading bundles is not the per-request
 * path, so Ajv's compile cost is paid once, lazily.
 */
import { createRequire } from 'node:module';
import type Ajv2020Module from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { FormatError } from '../errors.js';
import { compilePolicy, type CompiledPolicy, type PolicyBundle, type TrustMaterial } from '../policy.js';
import type { Ed25519Backend } from '../ed25519/backend.js';
import { BUNDLE_CONFIG_SCHEMA, POLICY_BUNDLE_SCHEMA, TRUST_MATERIAL_SCHEMA } from './schema-documents.js';
import { BundleFormatError, escapePointer, type BundleProblem } from './problems.js';

export type BundleDocumentKind = 'trust_material' | 'policy_bundle' | 'bundle_config';

type Ajv = InstanceType<typeof Ajv2020Module.default>;

const SCHEMAS = { trust_material: TRUST_MATERIAL_SCHEMA, policy_bundle: POLICY_BUNDLE_SCHEMA, bundle_config: BUNDLE_CONFIG_SCHEMA } as const;
let ajv: Ajv | undefined;
const validators = new Map<BundleDocumentKind, ValidateFunction>();

/** The compiled validator of one kind: Ajv is loaded, and each schema compiled, on first use. */
function getValidator(kind: BundleDocumentKind): ValidateFunction {
  let v = validators.get(kind);
  if (v === undefined) {
    if (ajv === undefined) {
      // Loaded on first use, so programs that only verify requests never load Ajv (CommonJS).
      const mod = createRequire(import.meta.url)('ajv/dist/2020.js') as typeof Ajv2020Module;
      ajv = new mod.default({ allErrors: true, strict: true, strictRequired: false, verbose: true });
      ajv.addKeyword('x-message');
    }
    v = ajv.compile(SCHEMAS[kind]);
    validators.set(kind, v);
  }
  return v;
}

/** Keywords whose failure is explained by the `x-message` of the schema that holds them. */
const EXPLAINED = new Set(['pattern', 'oneOf', 'anyOf', 'not']);

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  const custom = (e.parentSchema as Record<string, unknown> | undefined)?.['x-message'];
  if (EXPLAINED.has(e.keyword) && typeof custom === 'string') return custom;
  switch (e.keyword) {
    case 'type':
      return `must be ${p['type'] === 'integer' || p['type'] === 'object' || p['type'] === 'array' ? 'an' : 'a'} ${String(p['type'])}`;
    case 'const':
      return `must be ${JSON.stringify(p['allowedValue'])}`;
    case 'enum':
      return `must be one of ${(p['allowedValues'] as unknown[]).map((v) => String(v)).join(', ')}`;
    case 'minLength':
      return p['limit'] === 1 ? 'must not be empty' : `must be at least ${String(p['limit'])} characters`;
    case 'maxLength':
      return `must be at most ${String(p['limit'])} characters`;
    case 'minItems':
      return `must have at least ${String(p['limit'])} item${p['limit'] === 1 ? '' : 's'}`;
    case 'maxItems':
      return `must have at most ${String(p['limit'])} items`;
    case 'maxProperties':
      return `must have at most ${String(p['limit'])} properties`;
    case 'minimum':
    case 'maximum':
      return `must be ${e.keyword === 'minimum' ? '>=' : '<='} ${String(p['limit'])}`;
    default:
      return e.message ?? `fails ${e.keyword}`;
  }
}

/** Ajv errors → problems: one per real cause, branch noise of oneOf/anyOf dropped. */
export function problemsFromAjv(errors: readonly ErrorObject[], file: string): BundleProblem[] {
  // A oneOf/anyOf failure is reported once, by its own message; its branches' errors are noise.
  const combinators = new Set<string>();
  for (const e of errors) if (e.keyword === 'oneOf' || e.keyword === 'anyOf') combinators.add(`${e.instancePath}|${e.schemaPath}`);
  const out: BundleProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const branch = /^(.*\/(?:oneOf|anyOf))\/\d+\//.exec(e.schemaPath);
    if (branch !== null && combinators.has(`${e.instancePath}|${branch[1]!}`)) continue;
    if (e.keyword === 'propertyNames') continue; // reported by its inner error, which names the property
    const p = e.params as Record<string, unknown>;
    let pointer = e.instancePath;
    let message: string;
    const propertyName = (e as { propertyName?: unknown }).propertyName;
    if (e.keyword === 'required') {
      pointer += `/${escapePointer(String(p['missingProperty']))}`;
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      pointer += `/${escapePointer(String(p['additionalProperty']))}`;
      message = 'is not allowed here (unknown property)';
    } else if (typeof propertyName === 'string') {
      pointer += `/${escapePointer(propertyName)}`;
      message = describe(e);
    } else {
      message = describe(e);
    }
    const key = `${pointer}\n${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ file, pointer, message });
  }
  return out;
}

/** Validate `doc` against the schema of `kind`; throws BundleFormatError('invalid_bundle'). */
export function validateDocument(kind: BundleDocumentKind, doc: unknown, file: string): void {
  const validate = getValidator(kind);
  if (validate(doc)) return;
  throw new BundleFormatError('invalid_bundle', problemsFromAjv(validate.errors ?? [], file));
}

export function validateTrustMaterial(doc: unknown, file = 'trust material'): asserts doc is TrustMaterial {
  validateDocument('trust_material', doc, file);
}

export function validatePolicyBundle(doc: unknown, file = 'policy bundle'): asserts doc is PolicyBundle {
  validateDocument('policy_bundle', doc, file);
}

/** `a.b[0].c` → `/a/b/0/c` */
function dottedToPointer(path: string): string {
  let out = '';
  const re = /\.([^.[\]]+)|\[(\d+)\]/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(path)) !== null) out += `/${escapePointer(m[1] ?? m[2]!)}`;
  return out;
}

export interface CompilePairOptions {
  trustMaterialFile?: string;
  policyBundleFile?: string;
  backend?: Ed25519Backend;
}

/**
 * `compilePolicy` with its errors made precise: `invalid_bundle` naming the file and pointer.
 * Call after schema validation (the schemas catch shape errors with better messages).
 */
export function compilePair(trust: TrustMaterial, bundle: PolicyBundle, opts: CompilePairOptions = {}): CompiledPolicy {
  try {
    return compilePolicy(trust, bundle, opts.backend === undefined ? {} : { backend: opts.backend });
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    const detail = err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
    const m = /^(trust_material|policy_bundle)((?:\.[A-Za-z0-9_]+|\[\d+\])*): ([\s\S]*)$/.exec(detail);
    if (m === null) throw new BundleFormatError('invalid_bundle', [{ file: opts.policyBundleFile ?? 'policy bundle', pointer: '', message: detail }]);
    const file = m[1] === 'trust_material' ? (opts.trustMaterialFile ?? 'trust material') : (opts.policyBundleFile ?? 'policy bundle');
    throw new BundleFormatError('invalid_bundle', [{ file, pointer: dottedToPointer(m[2]!), message: m[3]! }]);
  }
}
