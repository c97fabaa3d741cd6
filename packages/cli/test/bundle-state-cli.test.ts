/**
 * The bundle high-water mark across real restarts (issue 17, finding 4): real adapter processes
 * of the bin, real files, a real state file; with --workers, a real worker killed and restarted.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { request } from 'undici';
import { signDocument } from '@trustplane/core';
import { freePort, makeRequest, policyBundle, startEchoUpstream, trustMaterial } from '@trustplane/testkit';
import { BUNDLE_SIGNING, binPath, bundleSigner, spawnAdapter, stopWithSigterm, tempDir } from './helpers.js';

/** Replace the pair in `dir` (each file atomically) with policy `id` at `version`. */
function writePair(dir: string, version: number, id = 'acme-orders'): { tm: string; pb: string } {
  const tm = path.join(dir, 'tm.json');
  const pb = path.join(dir, 'pb.json');
  const put = (file: string, doc: object) => {
    writeFileSync(`${file}.tmp`, JSON.stringify(signDocument(doc, bundleSigner, { kid: 'bundles-1', signerIssuer: 'test' })));
    renameSync(`${file}.tmp`, file);
  };
  put(tm, trustMaterial());
  put(
    pb,
    policyBundle((b) => {
      b.policy_version = version;
      b.policy_id = id;
    }),
  );
  return { tm, pb };
}

/** Start the adapter bin expecting it to FAIL: resolves with its exit code and stderr (killed after 15 s if it starts). */
async function startExpectingFailure(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [binPath, 'adapter', '--listen', `127.0.0.1:${await freePort()}`, '--admin-listen', `127.0.0.1:${await freePort()}`, '--audit-log', 'off', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  clearTimeout(timer);
  return { code, stderr };
}

const cliLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('trustplane:'));

async function metrics(admin: string): Promise<string> {
  const res = await request(`${admin}/metrics`);
  return res.body.text();
}

/** Poll `fn` every 100 ms until it is true (at most `ms`). */
async function until(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function childPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
}

describe('adapter --bundle-state-file (real processes)', { concurrency: true }, () => {
  test('a restart on an older signed pair, or on a higher version of another lineage, fails with one line naming both; hot reload to an older pair keeps serving the mark', async (t) => {
    const dir = tempDir(t);
    const state = path.join(dir, 'state.json');
    const upstream = await startEchoUpstream();
    t.after(() => upstream.close());
    const { tm, pb } = writePair(dir, 8);
    const args = ['--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', BUNDLE_SIGNING];

    // Without the flag: it starts, and says loudly that the protection is off.
    const off = await spawnAdapter(args);
    assert.match(off.stderr(), /bundle rollback protection across restarts is off: give --bundle-state-file PATH/);
    assert.equal(await stopWithSigterm(off), 0);

    const a = await spawnAdapter([...args, '--bundle-state-file', state]);
    assert.doesNotMatch(a.stderr(), /protection across restarts is off/);
    const mark = JSON.parse(readFileSync(state, 'utf8')) as { policy_id: string; policy_version: number };
    assert.deepEqual([mark.policy_id, mark.policy_version], ['acme-orders', 8]);
    // Hot reload to the older pair: refused; the mark (8) keeps serving; the state file is unchanged.
    writePair(dir, 7);
    a.child.kill('SIGHUP');
    await until('the reload refused', async () => /trustplane_bundle_reloads_total\{result="rejected"\} 1\n/.test(await metrics(a.admin)));
    assert.match(await metrics(a.admin), /trustplane_bundle_policy_version 8\n/);
    assert.match(a.stderr(), /"reason":"bundle_rollback","detail":"policy_version 7 is lower than the high-water mark 8 \(the serving pair\)"/);
    const req = makeRequest({ nowMs: Date.now() });
    const res = await request(`${a.url}/v1/orders/search`, { headers: req.headers });
    assert.equal(res.statusCode, 200, await res.body.text());
    assert.equal(await stopWithSigterm(a), 0);

    // Restart on the older pair: refused at start, one line naming both versions, exit 1.
    const older = await startExpectingFailure([...args, '--bundle-state-file', state]);
    assert.equal(older.code, 1, older.stderr);
    assert.deepEqual(cliLines(older.stderr), [`trustplane: bundle_policy_missing: cannot load the bundle pair: bundle_rollback: policy_version 7 is lower than the high-water mark 8 (recorded in ${state})`]);

    // Another lineage with a higher version: refused too.
    writePair(dir, 50, 'someone-else');
    const other = await startExpectingFailure([...args, '--bundle-state-file', state]);
    assert.equal(other.code, 1, other.stderr);
    assert.equal(cliLines(other.stderr).length, 1, other.stderr);
    assert.match(cliLines(other.stderr)[0]!, /bundle_lineage_mismatch: policy_id "someone-else" \(version 50\) is not the pinned lineage "acme-orders"/);
    assert.equal((JSON.parse(readFileSync(state, 'utf8')) as { policy_version: number }).policy_version, 8, 'refusals never move the mark');

    // A state file that is not a mark stops the start too (and is left as it is).
    writePair(dir, 9);
    writeFileSync(state, '{"version":"trustplane-bundle-state-v1"}');
    const bad = await startExpectingFailure([...args, '--bundle-state-file', state]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(cliLines(bad.stderr)[0] ?? '', /bundle_state_invalid: .*state\.json: \/policy_id: must be a non-empty string/);
    assert.equal(readFileSync(state, 'utf8'), '{"version":"trustplane-bundle-state-v1"}');
  });

  test('--workers 2: the primary decides; a worker killed while the files hold an older pair comes back on the primary\'s mark; a newer pair reaches every worker', async (t) => {
    const dir = tempDir(t);
    const state = path.join(dir, 'state.json');
    const upstream = await startEchoUpstream();
    t.after(() => upstream.close());
    const { tm, pb } = writePair(dir, 8);
    const a = await spawnAdapter(['--upstream', upstream.url, '--bundle', tm, '--policy-bundle', pb, '--bundle-signature-public-key', BUNDLE_SIGNING, '--bundle-state-file', state, '--workers', '2']);
    try {
      assert.match(await metrics(a.admin), /trustplane_bundle_policy_version 8\n/);
      const before = childPids(a.child.pid!);
      assert.equal(before.length, 2);

      // The older pair lands on disk: the primary refuses it (and tells the workers).
      writePair(dir, 7);
      await until('the primary refused the older pair', async () => /trustplane_bundle_reloads_total\{result="rejected"\} 2\n/.test(await metrics(a.admin)));
      // A worker dies and is restarted: it must not come up on the files' older pair.
      process.kill(before[0]!, 'SIGKILL');
      await until('the worker restarted', async () => {
        const now = childPids(a.child.pid!);
        if (now.length !== 2 || now.includes(before[0]!)) return false;
        const r = await request(`${a.admin}/readyz`);
        return r.statusCode === 200 && (await r.body.text()).includes('"workers":2');
      });
      // trustplane_bundle_policy_version aggregates as the minimum over the workers.
      assert.match(await metrics(a.admin), /trustplane_bundle_policy_version 8\n/);
      for (let i = 0; i < 4; i++) {
        const req = makeRequest({ nowMs: Date.now() });
        const res = await request(`${a.url}/v1/orders/search`, { headers: { ...req.headers, connection: 'close' } });
        assert.equal(res.statusCode, 200, await res.body.text());
      }

      // A newer pair: the primary accepts it, writes the mark, and every worker serves it.
      writePair(dir, 9);
      await until('every worker serves version 9', async () => /trustplane_bundle_policy_version 9\n/.test(await metrics(a.admin)));
      assert.equal((JSON.parse(readFileSync(state, 'utf8')) as { policy_version: number }).policy_version, 9);
    } finally {
      assert.equal(await stopWithSigterm(a), 0, a.stderr());
    }
    assert.equal(existsSync(state), true);
  });
});
