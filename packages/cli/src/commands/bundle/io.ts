/**
 * What the `trustplane bundle` verbs share: capped strict reads of bundle documents, the atomic
 * 0644 write of an output (temp file + fsync + rename: never half-written), and the refusal to
 * write over an input.
 */
import { realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { MAX_BUNDLE_BYTES, parseBundleDocument, parsePublicKey, writeFilesAtomic, type Ed25519PublicKey, type JsonObject } from '@trustplane/core';
import { readFileCapped, writeFileAtomic as writeAtomic } from '../../files.js';
import { failure, usageError } from '../../output.js';

export type DocumentType = 'trust_material' | 'policy_bundle';

/** Read and strictly parse a bundle document (≤ 8 MiB, duplicate keys refused). */
export function readDocument(file: string, option: string): JsonObject {
  return parseBundleDocument(readFileCapped(file, MAX_BUNDLE_BYTES, option), file);
}

/** Which kind of document, from its `version`. */
export function documentType(doc: JsonObject, file: string): DocumentType {
  if (doc['version'] === 'trustplane-trust-material-v1') return 'trust_material';
  if (doc['version'] === 'trustplane-bundle-v1') return 'policy_bundle';
  throw failure(`${file}: /version: must be "trustplane-trust-material-v1" or "trustplane-bundle-v1"`, 'invalid_bundle');
}

function identity(file: string): string {
  const abs = path.resolve(file);
  try {
    const st = statSync(abs);
    return `inode:${st.dev}:${st.ino}`;
  } catch {
    try {
      return `path:${realpathSync(path.dirname(abs))}/${path.basename(abs)}`;
    } catch {
      return `path:${abs}`;
    }
  }
}

/** Refuse an output that is an input (or another output): inputs are never modified in place. */
export function refuseOverlap(outputs: readonly (readonly [string, string])[], inputs: readonly (readonly [string, string])[]): void {
  const seen = new Map<string, string>();
  for (const [option, file] of inputs) seen.set(identity(file), option);
  for (const [option, file] of outputs) {
    const id = identity(file);
    const other = seen.get(id);
    if (other !== undefined) throw usageError(`${option} ${JSON.stringify(file)} is the same file as ${other}; write to a new file (inputs are never modified in place)`);
    seen.set(id, option);
  }
}

function systemMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Write a bundle document atomically (mode 0644), replacing the file: see files.ts. */
export function writeFileAtomic(file: string, data: string): void {
  writeAtomic(file, data, { mode: 0o644, overwrite: true });
}

/**
 * Write a bundle pair (mode 0644): both files staged first, then both renamed into place, so a
 * failure never leaves a new trust material beside an old policy bundle.
 */
export function writePairAtomic(files: readonly { readonly file: string; readonly data: string }[]): void {
  try {
    writeFilesAtomic(files, 0o644);
  } catch (err) {
    throw failure(`cannot write ${files.map((f) => JSON.stringify(f.file)).join(' and ')}: ${systemMessage(err)}`, undefined, err);
  }
}

/** `--public-key` values → imported keys (exit 1 `invalid_public_key` for a bad one). */
export function parsePublicKeys(values: readonly string[]): Ed25519PublicKey[] {
  return values.map((v) => {
    try {
      return parsePublicKey(v);
    } catch (err) {
      throw failure(`--public-key: ${systemMessage(err).replace(/^invalid_public_key: /, '')}`, 'invalid_public_key', err);
    }
  });
}

/** Repeatable option collector. */
export function collect(value: string, previous: string[] | undefined): string[] {
  if (value === '') throw new InvalidArgumentError('it must not be empty.');
  return [...(previous ?? []), value];
}

/** `12 s`, `5 min`, `3 h`, `2 d` */
export function humanAge(ms: number): string {
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 120) return `${s} s`;
  if (Math.abs(s) < 7200) return `${Math.round(s / 60)} min`;
  if (Math.abs(s) < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}
