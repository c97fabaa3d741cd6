/**
 * File helpers: capped reads of untrusted files, the atomic 0600 write of a private key file,
 * and key loading with errors that name the file.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { FormatError, fingerprint, readPrivateKeyFile, writeFileAtomic as coreWriteFileAtomic, type Ed25519PrivateKey } from '@trustplane/core';
import { failure } from './output.js';

/** The `--kid` default: `key-` + the first 16 hex characters of the public key fingerprint. */
export function defaultKid(publicKey: Uint8Array): string {
  return `key-${fingerprint(publicKey).slice('sha256:'.length, 'sha256:'.length + 16)}`;
}

function systemMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Load a private key file; every failure names the option and carries its code. */
export function loadPrivateKey(file: string, option = '--private-key'): Ed25519PrivateKey {
  try {
    return readPrivateKeyFile(file);
  } catch (err) {
    if (err instanceof FormatError) throw failure(`${option} ${JSON.stringify(file)}: ${err.message.replace(/^invalid_private_key: /, '')}`, err.code, err);
    throw failure(`cannot read ${option} ${JSON.stringify(file)}: ${systemMessage(err)}`, undefined, err);
  }
}

/** Read a whole regular file, refusing (before reading it all) anything over `maxBytes`. */
export function readFileCapped(file: string, maxBytes: number, option: string): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw failure(`cannot read ${option} ${JSON.stringify(file)}: ${systemMessage(err)}`, undefined, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw failure(`${option} ${JSON.stringify(file)} is not a regular file`);
    if (st.size > maxBytes) throw failure(`${option} ${JSON.stringify(file)} is larger than ${maxBytes} bytes`, 'too_large');
    // Read up to one byte past the cap: the size may have changed since fstat.
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > maxBytes) throw failure(`${option} ${JSON.stringify(file)} is larger than ${maxBytes} bytes`, 'too_large');
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * core's `writeFileAtomic` (readers see the old file or the new one, never a part; without
 * `overwrite` an existing file is never clobbered), with the CLI's one-line errors.
 */
export function writeFileAtomic(file: string, data: string, opts: { mode: number; overwrite: boolean }): void {
  try {
    coreWriteFileAtomic(file, data, opts);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') throw refuseOverwrite(file);
    throw failure(`cannot write ${JSON.stringify(file)}: ${systemMessage(err)}`, undefined, err);
  }
}

/** A private key file: mode 0600, never clobbering an existing file unless `overwrite`. */
export function writeSecretFileAtomic(file: string, data: string, overwrite: boolean): void {
  writeFileAtomic(file, data, { mode: 0o600, overwrite });
}

export function refuseOverwrite(file: string): Error {
  return failure(`${JSON.stringify(file)} already exists; refusing to overwrite it (use --force to replace it)`, 'file_exists');
}
