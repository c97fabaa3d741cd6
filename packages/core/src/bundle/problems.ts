/**
 * Precise bundle errors: every problem names the file, the JSON pointer (RFC 6901) inside it,
 * and what is wrong — `trust.json: /issuers/0/keys/1/public_key_b64url: must be base64url …`.
 */
import { FormatError } from '../errors.js';

export interface BundleProblem {
  /** The file (or document name) the problem is in. */
  readonly file: string;
  /** JSON pointer to the offending value; `''` is the whole document. */
  readonly pointer: string;
  readonly message: string;
}

/** How many problems a message lists before `… and N more`. */
const MAX_LISTED = 20;

export function formatProblem(p: BundleProblem): string {
  return `${p.file}: ${p.pointer === '' ? '(root)' : p.pointer}: ${p.message}`;
}

/**
 * A `FormatError` carrying the list of problems. `code` is `invalid_bundle` for schema and
 * semantic errors, `invalid_json` / `too_large` / `read_failed` below that, and the signature
 * codes of sign.ts.
 */
export class BundleFormatError extends FormatError {
  readonly problems: readonly BundleProblem[];

  constructor(code: string, problems: readonly BundleProblem[]) {
    const listed = problems.slice(0, MAX_LISTED).map(formatProblem);
    if (problems.length > MAX_LISTED) listed.push(`… and ${problems.length - MAX_LISTED} more`);
    super(code, listed.join('; '));
    this.name = 'BundleFormatError';
    this.problems = problems;
  }
}

/** One JSON pointer reference token (RFC 6901 §3). */
export function escapePointer(token: string | number): string {
  return String(token).replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Re-throw a FormatError as a BundleFormatError naming `file` (used for signature errors). */
export function inFile(err: unknown, file: string, pointer = ''): unknown {
  if (err instanceof BundleFormatError || !(err instanceof FormatError)) return err;
  const prefix = `${err.code}: `;
  const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  return new BundleFormatError(err.code, [{ file, pointer, message }]);
}

/**
 * Every `code` the bundle tooling throws or reports, with its meaning. `docs/bundles.md` lists
 * exactly these (a test keeps the two equal). Request decisions use the reason codes instead.
 */
export const BUNDLE_ERROR_CODES = {
  invalid_json: 'not strict JSON: a duplicate key, bad UTF-8, an unsafe integer, a truncated file',
  too_large: 'a file over the size cap (8 MiB)',
  read_failed: 'the file cannot be read: missing, unreadable, not a regular file',
  invalid_bundle: 'the JSON Schema or compilePolicy refused the document; each problem names file and pointer',
  unsigned_bundle: 'no signature, an unsigned skeleton, no signed_by, or signed_by.alg "none"',
  unsupported_signature_format: 'a signature format other than ed25519-jcs-v1, or an alg other than EdDSA',
  unknown_signing_key: 'signed_by.kid is not among the configured bundle-signing keys',
  invalid_bundle_signature: 'the signature does not verify: a tampered byte, the wrong key, a malformed value',
  bundle_pair_mismatch: "the policy bundle's trust_material_sha256 pins other trust material (a half-updated pair)",
  bundle_rollback: 'a policy_version lower than the high-water mark: the serving one, or the one recorded in the bundle state file',
  bundle_version_conflict: 'the high-water policy_version with other content',
  bundle_lineage_mismatch: 'a policy_id other than the pinned lineage (the serving pair, or the bundle state file)',
  bundle_state_invalid: 'the bundle state file (--bundle-state-file) is not a valid high-water mark; nothing is loaded until it is fixed or deleted',
  bundle_state_write_failed: 'the high-water mark could not be written to the bundle state file, so the newer pair is refused',
  internal_error: 'hot reload: an unexpected failure while loading (the pair is refused)',
  invalid_jwks: 'a JWK Set without a usable Ed25519 key, with private material, or malformed',
  duplicate_kid: 'merge-source: the kid already exists (without --replace-existing)',
  duplicate_source: 'merge-source: the route already has a rule with this issuer, trust domain and subject selector (without --replace-existing)',
  issuer_conflict: 'merge-source: the issuer is already trusted with another trust domain or source type',
  shared_issuer: "merge-source: another key of the issuer could mint the new client's subjects (a key not bound to subjects, or an overlapping binding); give the client its own issuer, or pass --shared-issuer",
  route_not_found: 'merge-source, remove-source: the route is not in the policy bundle',
  kid_revoked: 'merge-source: the kid is revoked; give the new key a new kid',
  invalid_public_key: 'merge-source: the public key is not a valid Ed25519 key',
  source_not_found: 'remove-source: the kid is not in the trust material',
} as const;

export type BundleErrorCode = keyof typeof BUNDLE_ERROR_CODES;
