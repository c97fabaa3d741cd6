import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fingerprint, formatPrivateKey, parsePrivateKey, publicKeyBase64url } from '@trustplane/core';
import { isOneErrorLine, run, runBin, tempDir } from './helpers.js';

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

test('gen-key (bin): writes a 64-byte key file with mode 0600 and prints kid, public key, fingerprint', async (t) => {
  const dir = tempDir(t);
  const out = path.join(dir, 'client.key');
  const r = await runBin(['gen-key', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(mode(out), 0o600);
  const text = readFileSync(out, 'utf8');
  assert.match(text, /^[A-Za-z0-9_-]{86}\n$/);
  assert.equal(Buffer.from(text.trim(), 'base64url').length, 64);
  const key = parsePrivateKey(text);
  assert.equal(formatPrivateKey(key), text.trim());
  const fp = fingerprint(key.publicKey);
  assert.match(r.stdout, new RegExp(`^kid: +key-${fp.slice(7, 23)}$`, 'm'));
  assert.match(r.stdout, new RegExp(`^public key: +${publicKeyBase64url(key)}$`, 'm'));
  assert.match(r.stdout, new RegExp(`^fingerprint: +${fp}$`, 'm'));
  // The private key is only ever written to the file.
  assert.ok(!r.stdout.includes(text.trim()));
  assert.ok(!r.stdout.includes(key.seed.toString('base64url')));
  // No temp file is left behind.
  assert.deepEqual(readdirSync(dir), ['client.key']);
});

test('gen-key (bin): refuses to overwrite without --force (exit 1), replaces with --force', async (t) => {
  const dir = tempDir(t);
  const out = path.join(dir, 'client.key');
  writeFileSync(out, 'precious\n', { mode: 0o644 });
  const refused = await runBin(['gen-key', '--out', out]);
  assert.equal(refused.code, 1);
  assert.ok(isOneErrorLine(refused.stderr), refused.stderr);
  assert.match(refused.stderr, /already exists.*--force/);
  assert.equal(refused.stdout, '');
  assert.equal(readFileSync(out, 'utf8'), 'precious\n');

  const forced = await runBin(['gen-key', '--out', out, '--force', '--json']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(mode(out), 0o600);
  const key = parsePrivateKey(readFileSync(out, 'utf8'));
  const printed = JSON.parse(forced.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(printed).sort(), ['fingerprint', 'kid', 'private_key_file', 'public_key_b64url']);
  assert.equal(printed['public_key_b64url'], publicKeyBase64url(key));
  assert.equal(printed['fingerprint'], fingerprint(key.publicKey));
  assert.equal(printed['private_key_file'], out);
  assert.deepEqual(readdirSync(dir), ['client.key']);
});

test('gen-key: --kid is reported as given; two runs make different keys', async (t) => {
  const dir = tempDir(t);
  const a = await run('gen-key', '--out', path.join(dir, 'a.key'), '--kid', 'client-key-1', '--json');
  const b = await run('gen-key', '--out', path.join(dir, 'b.key'), '--json');
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const ja = JSON.parse(a.stdout) as { kid: string; public_key_b64url: string };
  const jb = JSON.parse(b.stdout) as { kid: string; public_key_b64url: string };
  assert.equal(ja.kid, 'client-key-1');
  assert.match(jb.kid, /^key-[0-9a-f]{16}$/);
  assert.notEqual(ja.public_key_b64url, jb.public_key_b64url);
});

test('gen-key: an unwritable destination is a failure (exit 1) and leaves nothing behind', async (t) => {
  const dir = tempDir(t);
  const r = await run('gen-key', '--out', path.join(dir, 'missing-dir', 'x.key'));
  assert.equal(r.code, 1);
  assert.ok(isOneErrorLine(r.stderr), r.stderr);
  assert.match(r.stderr, /ENOENT/);
  assert.deepEqual(readdirSync(dir), []);
});
