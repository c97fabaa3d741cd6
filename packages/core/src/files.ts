/**
 * Small pieces shared by the programs that write secrets and fetch trust: an atomic file write
 * (readers see the old file or the new one, never a part) and the URL policy for anything trust
 * is fetched from or published at (https, or plain http on loopback only; no credentials).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fsyncSync, linkSync, openSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import * as path from 'node:path';

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
    // best effort: the rename itself is still atomic
  }
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
}

/**
 * Write a file atomically: a temp file is created exclusively ('wx') in the same directory with
 * `mode`, filled and fsynced, then put in place. With `overwrite` it is renamed over the target
 * (and the directory fsynced, best effort); without, it is hard-linked into place, which fails
 * with an `EEXIST` error if the name exists — so a file that appears between a check and the
 * write is never clobbered. The temp file never outlives the call. Errors are Node's own.
 */
export function writeFileAtomic(file: string, data: string, opts: { mode: number; overwrite: boolean }): void {
  if (opts.overwrite) {
    writeFilesAtomic([{ file, data }], opts.mode);
    return;
  }
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = stageTemp(target, data, opts.mode);
  let tmpExists = true;
  try {
    try {
      linkSync(tmp, target);
    } catch (err) {
      const code = errnoCode(err);
      // A file system without hard links: fall back to check-then-rename.
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw err;
      if (existsSync(target)) throw Object.assign(new Error(`EEXIST: file already exists, '${target}'`), { code: 'EEXIST' });
      renameSync(tmp, target);
      tmpExists = false;
      fsyncDirectory(dir);
      return;
    }
    unlinkSync(tmp);
    tmpExists = false;
    fsyncDirectory(dir);
  } finally {
    if (tmpExists) rmSync(tmp, { force: true });
  }
}

/**
 * Replace several files together (a bundle pair): every file is first written and fsynced to a
 * temporary file beside its target, and only when all of them are on disk are they renamed over
 * their targets. A failure while staging (a missing or read-only directory, a full disk) leaves
 * every target as it was and no temporary file behind.
 */
export function writeFilesAtomic(files: readonly { readonly file: string; readonly data: string }[], mode: number): void {
  const staged: { tmp: string; target: string }[] = [];
  try {
    for (const { file, data } of files) {
      const target = path.resolve(file);
      staged.push({ tmp: stageTemp(target, data, mode), target });
    }
    while (staged.length > 0) {
      const { tmp, target } = staged[0]!;
      renameSync(tmp, target);
      staged.shift();
      fsyncDirectory(path.dirname(target));
    }
  } finally {
    for (const { tmp } of staged) rmSync(tmp, { force: true });
  }
}

/**
 * A temp file beside `target`, created exclusively ('wx') with `mode`, filled and fsynced; its
 * path. On failure it is removed and the error thrown.
 */
function stageTemp(target: string, data: string, mode: number): string {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    try {
      // The umask can only clear bits, but pin the mode anyway (0600 for private keys).
      fchmodSync(fd, mode);
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  return tmp;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * Why `value` may not be used as a URL trust is fetched from or published at, or undefined:
 * https, or http on loopback only; never credentials; with `noQuery`, no query or fragment.
 */
export function trustUrlProblem(value: string, opts: { noQuery?: boolean } = {}): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return 'is not a URL';
  }
  if (u.username !== '' || u.password !== '') return 'must not carry credentials';
  if (opts.noQuery === true && (u.search !== '' || u.hash !== '')) return 'must not have a query or fragment';
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:' && LOOPBACK_HOSTS.has(u.hostname)) return undefined;
  return 'must be https (http only on loopback)';
}
