import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { request } from 'undici';
import { freePort, startEchoUpstream } from '@trustplane/testkit';
import { binPath, run, tempDir } from './helpers.js';
import { parseRouteSpec } from '../src/commands/up.js';

/** Start `trustplane up` as a real process; resolves once it prints "ready". */
async function up(args: string[]): Promise<{ stdout: () => string; stop: (signal: NodeJS.Signals) => Promise<number | null> }> {
  const child = spawn(process.execPath, [binPath, 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; i < 200 && !out.includes('Ctrl-C stops everything') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /trustplane up: ready/, `stdout: ${out}\nstderr: ${err}`);
  return {
    stdout: () => out,
    stop: async (signal) => {
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill(signal);
      return exited;
    },
  };
}

/** Pull the argv of a printed `trustplane …` command (two lines joined by `\`), as a shell splits it. */
function printedCommand(stdout: string, verb: string): string[] {
  const joined = stdout.replace(/\\\n\s+/g, '');
  const line = joined.split('\n').find((l) => l.trim().startsWith(`trustplane ${verb}`))!;
  const words = line.trim().replace(/ --curl \| sh$/, '').match(/'[^']*'|\S+/g)!;
  return words.map((w) => (w.startsWith("'") ? w.slice(1, -1) : w)).slice(1);
}

test('trustplane up: adapter + broker in front of your API; the printed next steps work; Ctrl-C stops cleanly; state is reused', async (t) => {
  // A space in the path: the printed commands quote it, so they still work when pasted.
  const dir = path.join(tempDir(t), 'my state');
  const upstream = await startEchoUpstream();
  t.after(() => upstream.close());
  const [port, adminPort] = [await freePort(), await freePort()];
  const args = ['--upstream', upstream.url, '--dir', dir, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--audience', 'shop-api'];
  const first = await up(args);
  const out = first.stdout();
  assert.match(out, /development catch-all/);
  assert.equal(statSync(path.join(dir, 'client.key')).mode & 0o777, 0o600);
  assert.match(out, /--socket '[^']*my state\/broker\.sock'/);
  // The directory holds private keys: it ignores itself in git.
  assert.match(readFileSync(path.join(dir, '.gitignore'), 'utf8'), /^\*$/m);
  assert.equal((await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode, 200);

  // 1. The printed `trustplane sign` line, sent.
  const sign = await run(...printedCommand(out, 'sign'));
  assert.equal(sign.code, 0, sign.stderr);
  const headers = JSON.parse(sign.stdout) as Record<string, string>;
  assert.ok(printedCommand(out, 'sign').includes(`http://127.0.0.1:${port}/hello`));
  const r1 = await request(`http://127.0.0.1:${port}/hello`, { headers });
  assert.equal(r1.statusCode, 200, await r1.body.text());
  assert.equal(upstream.requests.at(-1)!.headers['x-trustplane-subject'], 'svc:local-client');
  // 2. The printed `trustplane broker issue` line, sent.
  const issued = await run(...printedCommand(out, 'broker'));
  assert.equal(issued.code, 0, issued.stderr);
  const r2 = await request(`http://127.0.0.1:${port}/hello`, { headers: JSON.parse(issued.stdout) as Record<string, string> });
  assert.equal(r2.statusCode, 200, await r2.body.text());
  assert.equal(upstream.requests.at(-1)!.headers['x-trustplane-subject'], 'svc:local-broker-caller');
  // 3. No passport.
  const r3 = await request(`http://127.0.0.1:${port}/hello`);
  assert.equal(r3.statusCode, 401);
  assert.equal(upstream.requests.length, 2);

  // A second `up` on the same directory is refused before it writes anything the first would reload.
  const bundleBytes = readFileSync(path.join(dir, 'policy-bundle.json'), 'utf8');
  const [p2, a2] = [await freePort(), await freePort()];
  const clash = await run('up', '--upstream', upstream.url, '--dir', dir, '--listen', `127.0.0.1:${p2}`, '--admin-listen', `127.0.0.1:${a2}`);
  assert.equal(clash.code, 1, clash.stderr);
  assert.match(clash.stderr, /another trustplane up is running on .*; stop it first/);
  assert.equal(readFileSync(path.join(dir, 'policy-bundle.json'), 'utf8'), bundleBytes);
  assert.equal((await request(`http://127.0.0.1:${port}/hello`, { headers: JSON.parse((await run(...printedCommand(out, 'sign'))).stdout) as Record<string, string> })).statusCode, 200);

  assert.equal(await first.stop('SIGINT'), 0);
  assert.equal(existsSync(path.join(dir, 'broker.sock')), false);
  const audit = readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim().split('\n');
  assert.ok(audit.length >= 4, 'adapter and broker decisions are audited');

  // Again in the same directory: same keys, a newer policy version, explicit routes.
  const keyBefore = readFileSync(path.join(dir, 'client.key'), 'utf8');
  const second = await up([...args, '--route', 'GET /orders/{id}=orders.get']);
  assert.match(second.stdout(), /GET \/orders\/\{id\} \(orders\.get\)/);
  assert.equal(readFileSync(path.join(dir, 'client.key'), 'utf8'), keyBefore);
  assert.equal((JSON.parse(readFileSync(path.join(dir, 'policy-bundle.json'), 'utf8')) as { policy_version: number }).policy_version, 2);
  const s2 = await run(...printedCommand(second.stdout(), 'sign'));
  const r4 = await request(`http://127.0.0.1:${port}/orders/x`, { headers: JSON.parse(s2.stdout) as Record<string, string> });
  assert.equal(r4.statusCode, 200);
  assert.equal(await second.stop('SIGTERM'), 0);
  // The adapter keeps the high-water mark in the state directory: with policy-bundle.json gone
  // (or edited back), the next start still signs above the mark, never below it.
  const markOf = () => (JSON.parse(readFileSync(path.join(dir, 'bundle-state.json'), 'utf8')) as { policy_id: string; policy_version: number });
  assert.deepEqual([markOf().policy_id, markOf().policy_version], ['trustplane-up', 2]);
  rmSync(path.join(dir, 'policy-bundle.json'));
  const third = await up(args);
  assert.equal((JSON.parse(readFileSync(path.join(dir, 'policy-bundle.json'), 'utf8')) as { policy_version: number }).policy_version, 3);
  assert.equal(markOf().policy_version, 3);
  assert.equal(await third.stop('SIGTERM'), 0);
});

test('trustplane up: bad input is one clear line', async (t) => {
  // A route given twice makes bundles the adapter would refuse: exit 2 before any bundle is written.
  const dir = path.join(tempDir(t), 'state');
  const twice = await run('up', '--upstream', 'http://127.0.0.1:1', '--dir', dir, '--route', 'GET /a=r.a', '--route', 'GET /b=r.a');
  assert.equal(twice.code, 2, twice.stderr);
  assert.match(twice.stderr, /^trustplane: these flags make bundles that would not load: .*r\.a/);
  assert.equal(twice.stderr.trim().split('\n').length, 1, twice.stderr);
  assert.equal(existsSync(path.join(dir, 'policy-bundle.json')), false);
  const noUpstream = await run('up');
  assert.equal(noUpstream.code, 2);
  assert.match(noUpstream.stderr, /--upstream/);
  const badUrl = await run('up', '--upstream', 'ftp://x');
  assert.equal(badUrl.code, 2);
  assert.match(badUrl.stderr, /http:\/\/ or https:\/\//);
  assert.throws(() => parseRouteSpec('orders'), /expected 'METHOD \/path/);
  assert.deepEqual(parseRouteSpec('GET /orders/{id}'), { method: 'GET', pathTemplate: '/orders/{id}', routeId: 'get.orders.id' });
  assert.deepEqual(parseRouteSpec('POST /=root.create'), { method: 'POST', pathTemplate: '/', routeId: 'root.create' });
});
