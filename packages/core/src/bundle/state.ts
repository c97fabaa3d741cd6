/**
 * The bundle high-water mark (`--bundle-state-file`): the lineage (`policy_id`), the highest
 * `policy_version` accepted and the content digest of that pair, kept in a small file so that a
 * restarted verifier refuses what the running one would have refused — an older signed pair
 * that still trusts a removed or revoked key, or a pair of another lineage. Written atomically
 * (temp file, fsync, rename: readers see the old mark or the new one), read strictly (size cap,
 * strict JSON, exactly these members); a file that is not a valid mark stops the start rather
 * than resetting it (fail closed). Changing the lineage is an operator action: delete the file.
 */
import { FormatError } from '../errors.js';
import { isSha256Hex } from '../encoding.js';
import { writeFileAtomic } from '../files.js';
import { isJsonObject, parseJsonBytes } from '../json.js';
import { BundleFormatError } from './problems.js';
import { readBundleFile } from './load.js';

export const BUNDLE_STATE_VERSION = 'trustplane-bundle-state-v1';
/** A mark is ~250 bytes; anything much larger is not one. */
const MAX_STATE_BYTES = 4096;
const MAX_POLICY_ID_CHARS = 512;

export interface BundleMark {
  readonly policyId: string;
  readonly policyVersion: number;
  /** `BundlePair.contentSha256` of the pair that set the mark. */
  readonly contentSha256: string;
}

export interface BundleState extends BundleMark {
  /** RFC 3339 UTC time the mark was written (informational). */
  readonly updatedAt: string;
}

function invalid(file: string, pointer: string, message: string): BundleFormatError {
  return new BundleFormatError('bundle_state_invalid', [{ file, pointer, message: `${message} (not a bundle state file; to reset the mark on purpose, delete it)` }]);
}

/** Parse a state file's bytes; throws BundleFormatError `bundle_state_invalid`. */
export function parseBundleState(bytes: Uint8Array, file: string): BundleState {
  let doc;
  try {
    doc = parseJsonBytes(bytes, MAX_STATE_BYTES, file, { maxDepth: 2 });
  } catch (err) {
    if (err instanceof FormatError) throw invalid(file, '', err.message);
    throw err;
  }
  if (!isJsonObject(doc)) throw invalid(file, '', 'must be a JSON object');
  const allowed = ['version', 'policy_id', 'policy_version', 'content_sha256', 'updated_at'];
  for (const k of Object.keys(doc)) if (!allowed.includes(k)) throw invalid(file, `/${k}`, 'unknown member');
  if (doc['version'] !== BUNDLE_STATE_VERSION) throw invalid(file, '/version', `must be ${JSON.stringify(BUNDLE_STATE_VERSION)}`);
  const id = doc['policy_id'];
  if (typeof id !== 'string' || id === '' || id.length > MAX_POLICY_ID_CHARS) throw invalid(file, '/policy_id', `must be a non-empty string of at most ${MAX_POLICY_ID_CHARS} characters`);
  const v = doc['policy_version'];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(file, '/policy_version', 'must be a non-negative integer');
  const c = doc['content_sha256'];
  if (typeof c !== 'string' || !isSha256Hex(c)) throw invalid(file, '/content_sha256', 'must be 64 lower-case hex characters');
  const at = doc['updated_at'];
  if (typeof at !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/.test(at)) throw invalid(file, '/updated_at', 'must be an RFC 3339 UTC time');
  return { policyId: id, policyVersion: v, contentSha256: c, updatedAt: at };
}

/**
 * Read the mark; `undefined` when the file does not exist (the first start: the first accepted
 * pair sets it). Any other read failure, or a file that is not a valid mark, throws
 * `bundle_state_invalid` / `read_failed`.
 */
export function readBundleState(file: string): BundleState | undefined {
  let bytes: Buffer;
  try {
    bytes = readBundleFile(file, MAX_STATE_BYTES);
  } catch (err) {
    if (err instanceof BundleFormatError && err.code === 'read_failed' && /ENOENT/.test(err.message)) return undefined;
    if (err instanceof BundleFormatError && err.code === 'too_large') throw invalid(file, '', `is larger than ${MAX_STATE_BYTES} bytes`);
    throw err;
  }
  return parseBundleState(bytes, file);
}

/** The file's text for a mark (2-space JSON, one trailing newline). */
export function formatBundleState(mark: BundleMark, nowMs: number): string {
  const doc = { version: BUNDLE_STATE_VERSION, policy_id: mark.policyId, policy_version: mark.policyVersion, content_sha256: mark.contentSha256, updated_at: new Date(nowMs).toISOString() };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** Write the mark atomically (mode 0644); throws BundleFormatError `bundle_state_write_failed`. */
export function writeBundleState(file: string, mark: BundleMark, nowMs: number): void {
  try {
    writeFileAtomic(file, formatBundleState(mark, nowMs), { mode: 0o644, overwrite: true });
  } catch (err) {
    throw new BundleFormatError('bundle_state_write_failed', [{ file, pointer: '', message: `cannot write the bundle high-water mark: ${err instanceof Error ? err.message : String(err)}` }]);
  }
}

/** Why `pair` may not replace (or start after) `mark`, or undefined when it may. */
export function checkAgainstMark(pair: BundleMark, mark: BundleMark | undefined, where: string): { reason: string; detail: string } | undefined {
  if (mark === undefined) return undefined;
  if (pair.policyId !== mark.policyId) {
    return {
      reason: 'bundle_lineage_mismatch',
      detail: `policy_id ${JSON.stringify(pair.policyId)} (version ${pair.policyVersion}) is not the pinned lineage ${JSON.stringify(mark.policyId)} (${where}); changing lineage is an operator action: delete the bundle state file and restart`,
    };
  }
  if (pair.policyVersion < mark.policyVersion) {
    return { reason: 'bundle_rollback', detail: `policy_version ${pair.policyVersion} is lower than the high-water mark ${mark.policyVersion} (${where})` };
  }
  if (pair.policyVersion === mark.policyVersion && pair.contentSha256 !== mark.contentSha256) {
    return { reason: 'bundle_version_conflict', detail: `policy_version ${pair.policyVersion} is the high-water mark (${where}) but the content differs; increase policy_version` };
  }
  return undefined;
}
