/** Test helpers: run the CLI in-process or as the real bin, temp dirs, a ready key file. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { encodeBase64url, formatPrivateKey, privateKeyFromSeed, signDocument, type Ed25519PrivateKey } from '@trustplane/core';
import { freePort, policyBundle, trustMaterial } from '@trustplane/testkit';
import { main } from '../src/main.js';

/** Repository root (tests run from packages/cli/dist/test). */
export const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
/** The bin shim, as npm links it. */
export const binPath = fileURLToPath(new URL('../../bin/trustplane.js', import.meta.url));
export const cliPackageJson = path.join(repoRoot, 'packages/cli/package.json');
export const vectorDir = path.join(repoRoot, 'conformance/vectors/v1');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `trustplane ...args` in-process with captured output. */
export async function run(...args: string[]): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'trustplane', ...args], {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}

/** Run the real bin in a child process. */
export function runBin(args: readonly string[], cwd?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [binPath, ...args], { cwd: cwd ?? repoRoot, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A temp dir removed when the test ends. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'trustplane-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A fixed test key. */
export const testKey: Ed25519PrivateKey = privateKeyFromSeed(Buffer.alloc(32, 7));
export const otherKey: Ed25519PrivateKey = privateKeyFromSeed(Buffer.alloc(32, 8));
export const testPublicKey = encodeBase64url(testKey.publicKey);
export const otherPublicKey = encodeBase64url(otherKey.publicKey);

/** Write `key` (default testKey) as a key file in `dir`; returns its path. */
export function writeKeyFile(dir: string, key: Ed25519PrivateKey = testKey, name = 'client.key'): string {
  const file = path.join(dir, name);
  writeFileSync(file, `${formatPrivateKey(key)}\n`, { mode: 0o600 });
  return file;
}

export const IDENTITY = {
  issuer: 'https://issuer.example/software-jwks',
  subject: 'service:orders-client',
  audience: 'orders-api',
  trustDomain: 'example.local',
} as const;

/** The identity flags for issue and sign. */
export function identityArgs(keyFile: string, extra: readonly string[] = []): string[] {
  return [
    '--private-key',
    keyFile,
    '--issuer',
    IDENTITY.issuer,
    '--subject',
    IDENTITY.subject,
    '--audience',
    IDENTITY.audience,
    '--trust-domain',
    IDENTITY.trustDomain,
    ...extra,
  ];
}

/** The stderr contract: exactly one line `trustplane: …`. */
export function isOneErrorLine(stderr: string): boolean {
  return /^trustplane: [^\n]+\n$/.test(stderr);
}

/** The bundle-signing key of the process tests, and its `--bundle-signature-public-key` value. */
export const bundleSigner: Ed25519PrivateKey = privateKeyFromSeed(Buffer.alloc(32, 77));
export const BUNDLE_SIGNING = `bundles-1=${encodeBase64url(bundleSigner.publicKey)}`;

/** The testkit trust material and policy bundle, signed with `bundleSigner`, written into `dir`. */
export function writeSignedBundles(dir: string): { tm: string; pb: string } {
  const tm = path.join(dir, 'tm.json');
  const pb = path.join(dir, 'pb.json');
  writeFileSync(tm, JSON.stringify(signDocument(trustMaterial(), bundleSigner, { kid: 'bundles-1', signerIssuer: 'test' })));
  writeFileSync(pb, JSON.stringify(signDocument(policyBundle(), bundleSigner, { kid: 'bundles-1', signerIssuer: 'test' })));
  return { tm, pb };
}

/** A `trustplane adapter` process of the real bin, on free loopback ports, audit off. */
export interface SpawnedAdapter {
  child: ChildProcess;
  url: string;
  admin: string;
  stderr: () => string;
}

/** Start the adapter bin with `args` and `env`; resolves once it says it is listening. */
export async function spawnAdapter(args: readonly string[], env: Record<string, string> = {}): Promise<SpawnedAdapter> {
  // freePort() closes the port it found before the adapter binds it; meanwhile another process
  // (an outbound connection's ephemeral port) may take it. Such a start is tried again on other
  // ports; any other failure is the test's.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const adminPort = await freePort();
    const child = spawn(process.execPath, [binPath, 'adapter', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--audit-log', 'off', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      // The CLI's own line: a structured log line may say "listening" earlier.
      const stderr = await stderrUntil(child, 'trustplane adapter: listening on', 'adapter');
      return { child, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}`, stderr };
    } catch (err) {
      if (attempt >= 3 || !(err instanceof Error) || !/EADDRINUSE: address already in use 127\.0\.0\.1:(\d+)/.test(err.message)) throw err;
    }
  }
}

/**
 * Collect a spawned process's stderr (stdio[2] 'pipe'); resolves once it contains `needle`, with
 * a reader of everything collected so far; rejects if the process exits first.
 */
export function stderrUntil(child: ChildProcess, needle: string, what: string): Promise<() => string> {
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes(needle)) resolve(() => err);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited ${code}: ${err}`)));
  });
}

/** SIGTERM the process; resolves with its exit code. */
export function stopWithSigterm(p: { child: ChildProcess }): Promise<number | null> {
  const exited = new Promise<number | null>((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  return exited;
}
