import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { binPath, cliPackageJson, isOneErrorLine, run, runBin } from './helpers.js';

const COMMANDS = ['gen-key', 'issue', 'sign', 'verify', 'transcript'] as const;

test('bin: starts with a node shebang', () => {
  assert.match(readFileSync(binPath, 'utf8'), /^#!\/usr\/bin\/env node\n/);
});

test('bin: --version prints the version from packages/cli/package.json', async () => {
  const { version } = JSON.parse(readFileSync(cliPackageJson, 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await runBin([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${version}\n`);
    assert.equal(r.stderr, '');
  }
});

test('bin: --help of the program lists every command', async () => {
  const r = await runBin(['--help']);
  assert.equal(r.code, 0);
  for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^  ${c} `, 'm'));
});

test('bin: --help of each command prints its usage and options, exit 0', async () => {
  const expected: Record<(typeof COMMANDS)[number], string[]> = {
    'gen-key': ['--out <file>', '--force', '--kid <kid>', '--json'],
    issue: ['--private-key <file>', '--issuer', '--subject', '--audience', '--trust-domain', '--kid', '--ttl <seconds>', '--json'],
    sign: ['--route-id', '--method', '--url', '--header', '--data <string>', '--data-file', '--signed-headers', '--curl', '--json'],
    verify: ['--token', '--public-key', '--audience', '--issuer', '--trust-domain', '--skew', '--max-lifetime', '--json'],
    transcript: ['--vector <file>', '--json'],
  };
  await Promise.all(
    COMMANDS.map(async (c) => {
      const r = await runBin([c, '--help']);
      assert.equal(r.code, 0, c);
      assert.match(r.stdout, new RegExp(`^Usage: trustplane ${c} `), c);
      for (const flag of expected[c]) assert.ok(r.stdout.includes(flag), `${c} --help lacks ${flag}`);
      assert.equal(r.stderr, '');
    }),
  );
  const viaHelp = await run('help', 'verify');
  assert.equal(viaHelp.code, 0);
  assert.match(viaHelp.stdout, /^Usage: trustplane verify /);
});

test('usage errors: exit 2 with one `trustplane: …` line on stderr', async () => {
  const cases: [string[], RegExp][] = [
    [['no-such-command'], /unknown command 'no-such-command'/],
    [['gen-key', '--out', '/nonexistent-trustplane-dir/k', '--no-such-flag'], /unknown option '--no-such-flag'/],
    [['gen-key'], /required option '--out <file>' not specified/],
    [['issue', '--private-key', 'k'], /required option '--issuer <issuer>' not specified/],
    [['verify', '--token'], /option '--token <passport>' argument missing/],
    [['gen-key', '--out', '/nonexistent-trustplane-dir/k', 'extra'], /too many arguments/],
    [['verify', '--token', 't', '--public-key', 'k', '--skew', '-1'], /--skew/],
    [['verify', '--token', 't', '--public-key', 'k', '--max-lifetime', '0'], /--max-lifetime/],
    [['transcript', '--vector', ''], /--vector/],
  ];
  for (const [args, message] of cases) {
    const r = await run(...args);
    assert.equal(r.code, 2, args.join(' '));
    assert.ok(isOneErrorLine(r.stderr), `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, '');
  }
});

test('no command: help on stderr, exit 2 (bin)', async () => {
  const r = await runBin([]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^Usage: trustplane /);
  assert.equal(r.stdout, '');
});

test('bin: a usage error exits 2, a failure exits 1', async () => {
  const usage = await runBin(['issue', '--ttl', 'abc']);
  assert.equal(usage.code, 2);
  assert.ok(isOneErrorLine(usage.stderr), usage.stderr);
  const fail = await runBin(['transcript', '--vector', '/nonexistent/trustplane-vector.json']);
  assert.equal(fail.code, 1);
  assert.ok(isOneErrorLine(fail.stderr), fail.stderr);
  assert.match(fail.stderr, /ENOENT/);
});

test('output that cannot be written is one line and exit 1 (a full disk), or a quiet 141 when the reader went away', async () => {
  const { spawn } = await import('node:child_process');
  const { openSync, closeSync } = await import('node:fs');
  const full = openSync('/dev/full', 'w');
  try {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [binPath, 'bundle', '--help'], { stdio: ['ignore', full, 'pipe'] });
      let stderr = '';
      c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      c.on('close', (code) => resolve({ code, stderr }));
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'trustplane: cannot write the output: ENOSPC\n');
  } finally {
    closeSync(full);
  }
  const gone = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, [binPath, 'bundle', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout.destroy(); // the reader is gone before the first write
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => resolve({ code, stderr }));
  });
  assert.equal(gone.code, 141);
  assert.equal(gone.stderr, '');
});
