/**
 * Runs the shell examples of the user docs, so that every documented command keeps working.
 *
 * The convention, for each file in DOC_FILES:
 * - Every fenced block tagged ```sh is run: the blocks of one file, in order, as ONE script, by
 *   `bash -euo pipefail` (stderr merged into stdout) in a fresh temp directory. `trustplane` is on
 *   PATH (a wrapper around this checkout's bin) and `node_modules` links to this checkout's: what
 *   the docs' norun setup blocks give a reader (`export PATH="$PWD/node_modules/.bin:$PATH"`, a
 *   scratch directory, the link). Blocks tagged ```sh norun are shown, never run: only for what
 *   cannot run here (a fresh clone's `npm ci`, `git clone`, Kubernetes/SPIRE). Other fences never run.
 * - A comment `# → TEXT` on a line of a sh block is an expectation: TEXT must occur in the
 *   script's output, the expectations of a file in the order they are written.
 * - Ports: every distinct 4-digit number written as `127.0.0.1:NNNN` or `localhost:NNNN` in a
 *   file's sh blocks is a port; each of its whole-word occurrences in those blocks is rewritten to
 *   one free port (so `.listen(3000, …)` follows `--upstream http://127.0.0.1:3000`).
 * - Long-running processes are backgrounded in the doc itself (`… &`, a readiness loop, `kill`).
 *   The harness adds `trap 'kill $(jobs -p)' EXIT` and kills the script's process group when it
 *   ends or times out, so nothing outlives a failing script.
 * DOCS_TEST_VERBOSE=1 prints every script's output as a test diagnostic.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

// From packages/cli/dist/test/ (not via ./helpers.js, which loads the whole CLI).
const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const binPath = path.join(repoRoot, 'packages/cli/bin/trustplane.js');

/** The tested docs, relative to the repository root; the longest first, so that two at a time finish together. */
const DOC_FILES = [
  'docs/examples/spiffe-broker.md',
  'docs/examples/software-jwks.md',
  'docs/examples/ec2-service.md',
  'docs/examples/cross-cluster-n8n.md',
  'docs/quickstart.md',
  'docs/first-15-minutes.md',
] as const;
/** Docs whose relative links must resolve (no sh blocks of their own need to run). */
const LINKED_FILES = [...DOC_FILES, 'docs/examples/README.md'] as const;
const SCRIPT_TIMEOUT_MS = 90_000;

interface Block {
  info: string;
  body: string;
}

/** Fenced code blocks (fences at column 0) with their info strings. */
function fencedBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let open: { info: string; lines: string[] } | undefined;
  for (const line of markdown.split('\n')) {
    const fence = /^```(.*)$/.exec(line);
    if (open === undefined) {
      if (fence !== null) open = { info: (fence[1] ?? '').trim(), lines: [] };
    } else if (fence !== null && fence[1]?.trim() === '') {
      blocks.push({ info: open.info, body: open.lines.join('\n') });
      open = undefined;
    } else {
      open.lines.push(line);
    }
  }
  assert.equal(open, undefined, 'an unclosed code fence');
  return blocks;
}

/** The blocks that run: tagged `sh` without `norun`. */
function runnableBlocks(markdown: string): string[] {
  return fencedBlocks(markdown)
    .filter((b) => {
      const [lang, ...flags] = b.info.split(/\s+/);
      return lang === 'sh' && !flags.includes('norun');
    })
    .map((b) => b.body);
}

/** The 4-digit ports a script names as 127.0.0.1:NNNN or localhost:NNNN. */
function portsIn(script: string): string[] {
  return [...new Set([...script.matchAll(/\b(?:127\.0\.0\.1|localhost):(\d{4})\b/g)].map((m) => m[1]!))];
}

/** Replace each whole-word occurrence of a mapped port. */
function rewritePorts(script: string, map: ReadonlyMap<string, number>): string {
  return script.replace(/\b\d{4}\b/g, (n) => String(map.get(n) ?? n));
}

/** The `# → TEXT` expectations, in order. */
function expectations(script: string): string[] {
  return script
    .split('\n')
    .map((l) => /#\s*→\s*(.+?)\s*$/.exec(l)?.[1])
    .filter((e): e is string => e !== undefined);
}

const handedOut = new Set<number>();
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

interface ScriptResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  timedOut: boolean;
}

/** Run `script` with bash in `cwd`, in its own process group; the group is killed at the end. */
function runScript(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<ScriptResult> {
  const file = path.join(path.dirname(cwd), 'script.sh');
  writeFileSync(file, `exec 2>&1\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n${script}\n`);
  return new Promise((resolve) => {
    const child = spawn('bash', ['-euo', 'pipefail', file], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stderr.on('data', (d: Buffer) => chunks.push(d));
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* the group is gone already */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, SCRIPT_TIMEOUT_MS);
    // When bash exits, kill whatever of its group is left (it may hold the output pipe open).
    child.once('exit', killGroup);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output: Buffer.concat(chunks).toString('utf8'), timedOut });
    });
  });
}

/** Each expectation, in order, in `output`; returns the first one missing. */
function firstMissing(output: string, wanted: readonly string[]): string | undefined {
  let from = 0;
  for (const w of wanted) {
    const at = output.indexOf(w, from);
    if (at < 0) return w;
    from = at + w.length;
  }
  return undefined;
}

describe('docs: every sh block runs and shows what the doc says', { concurrency: 2 }, () => {
  for (const doc of DOC_FILES) {
    it(doc, async (t) => {
      const markdown = readFileSync(path.join(repoRoot, doc), 'utf8');
      const blocks = runnableBlocks(markdown);
      assert.ok(blocks.length > 0, `${doc} has no runnable sh block`);
      const raw = blocks.join('\n');
      const ports = new Map<string, number>();
      for (const p of portsIn(raw)) ports.set(p, await freePort());
      const script = rewritePorts(raw, ports);

      const root = mkdtempSync(path.join(tmpdir(), 'trustplane-docs-'));
      try {
        const bin = path.join(root, 'bin');
        const work = path.join(root, 'work');
        mkdirSync(bin);
        mkdirSync(work);
        writeFileSync(path.join(bin, 'trustplane'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(binPath)} "$@"\n`, { mode: 0o755 });
        symlinkSync(path.join(repoRoot, 'node_modules'), path.join(work, 'node_modules'));
        const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}${path.delimiter}${process.env['PATH'] ?? ''}`, NO_COLOR: '1' };
        for (const k of Object.keys(env)) if (k.startsWith('TRUSTPLANE_')) delete env[k];

        const r = await runScript(script, work, env);
        if (process.env['DOCS_TEST_VERBOSE'] === '1') for (const line of r.output.split('\n')) t.diagnostic(line);
        const show = `--- script (ports ${JSON.stringify(Object.fromEntries(ports))}) ---\n${script}\n--- output ---\n${r.output}`;
        assert.equal(r.timedOut, false, `${doc}: timed out after ${SCRIPT_TIMEOUT_MS} ms\n${show}`);
        assert.equal(r.code, 0, `${doc}: exit ${r.code ?? r.signal}\n${show}`);
        const missing = firstMissing(r.output, expectations(script));
        assert.equal(missing, undefined, `${doc}: expected output (in order) not found: ${missing}\n${show}`);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  }
});

describe('docs: links and conventions', () => {
  it('every relative link in the tested docs and the examples index resolves', () => {
    for (const doc of LINKED_FILES) {
      const markdown = readFileSync(path.join(repoRoot, doc), 'utf8');
      for (const m of markdown.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split('#')[0]!;
        if (target === '' || /^[a-z]+:/i.test(target)) continue;
        assert.ok(existsSync(path.join(repoRoot, path.dirname(doc), target)), `${doc}: broken link ${m[1]}`);
      }
    }
  });

  it('the examples index links every example page', () => {
    const index = readFileSync(path.join(repoRoot, 'docs/examples/README.md'), 'utf8');
    for (const doc of DOC_FILES.filter((d) => d.startsWith('docs/examples/'))) {
      assert.ok(index.includes(`(${path.basename(doc)})`), `docs/examples/README.md does not link ${doc}`);
    }
  });

  it('the harness helpers: fences, norun, ports, expectations', () => {
    const md = ['```sh', 'a 127.0.0.1:8080 # → ok', '```', '```sh norun', 'npm ci', '```', '```console', '$ x', '```', '```sh', 'listen(8080) 3000 2026', '```'].join('\n');
    assert.deepEqual(runnableBlocks(md), ['a 127.0.0.1:8080 # → ok', 'listen(8080) 3000 2026']);
    const s = runnableBlocks(md).join('\n');
    assert.deepEqual(portsIn(s), ['8080']);
    assert.equal(rewritePorts(s, new Map([['8080', 41234]])), 'a 127.0.0.1:41234 # → ok\nlisten(41234) 3000 2026');
    assert.deepEqual(expectations(s), ['ok']);
    assert.equal(firstMissing('a b c', ['a', 'c']), undefined);
    assert.equal(firstMissing('a b c', ['c', 'a']), 'a');
  });
});
