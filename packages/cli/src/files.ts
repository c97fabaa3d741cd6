/**
 * File helpers: capped reads of untrusted files, the atomic 0600 write of a private key file,
 * and key loading with errors that name the file.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fstatSync, fsyncSync, linkSync, openSync, readSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { FormatError, fingerprint, readPrivateKeyFile, type Ed25519PrivateKey } from '@trustplane/core';
import { CliError, failure } from './output.js';

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
 * Write a file atomically: a temp file is created exclusively ('wx') in the same directory with
 * `mode`, filled and fsynced, then put in place, so a reader (the adapter's watcher) sees the
 * old file or the new one, never a part. With `overwrite` it is renamed over the target (and the
 * directory fsynced, best effort); without, it is hard-linked into place, which fails if the
 * name exists — so a file that appears between the check and the write is never clobbered.
 * The temp file never outlives the call.
 */
export function writeFileAtomic(file: string, data: string, opts: { mode: number; overwrite: boolean }): void {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(8).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', opts.mode);
  } catch (err) {
    throw failure(`cannot write ${JSON.stringify(file)}: ${systemMessage(err)}`, undefined, err);
  }
  let tmpExists = true;
  try {
    try {
      // The umask can only clear bits, but pin the mode anyway (0600 for private keys).
      fchmodSync(fd, opts.mode);
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.overwrite) {
      renameSync(tmp, target);
      tmpExists = false;
      fsyncDirectory(dir);
      return;
    }
    try {
      linkSync(tmp, target);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') throw refuseOverwrite(file);
      // A file system without hard links: fall back to check-then-rename.
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw err;
      if (existsSync(target)) throw refuseOverwrite(file);
      renameSync(tmp, target);
      tmpExists = false;
      return;
    }
    unlinkSync(tmp);
    tmpExists = false;
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw failure(`cannot write ${JSON.stringify(file)}: ${systemMessage(err)}`, undefined, err);
  } finally {
    if (tmpExists) rmSync(tmp, { force: true });
  }
}

/** Make a rename durable; not every file system lets a directory be fsynced (best effort). */
function fsyncDirectory(dir: string): void {
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // best effort
  }
}

/** A private key file: mode 0600, never clobbering an existing file unless `overwrite`. */
export function writeSecretFileAtomic(file: string, data: string, overwrite: boolean): void {
  writeFileAtomic(file, data, { mode: 0o600, overwrite });
}

export function refuseOverwrite(file: string): Error {
  return failure(`${JSON.stringify(file)} already exists; refusing to overwrite it (use --force to replace it)`, 'file_exists');
}
