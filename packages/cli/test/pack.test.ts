/**
 * What the images ship: `npm pack` of every workspace package the CLI needs at run time, installed
 * from the tarballs alone (`--omit=dev --ignore-scripts`, as deploy/docker/*.Dockerfile do) into
 * an empty project — then the installed bins run: `trustplane --version`, the bundle tooling,
 * `trustplane-adapter` serving a signed request to a tiny upstream (healthz, readyz, SIGTERM → 0)
 * and `trustplane-broker --help`. A file missing from a package's `files` fails here, not in a
 * container.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { freePort } from '@trustplane/testkit';
import { repoRoot } from './helpers.js';

/** The packages the CLI needs at run time (its dependencies and theirs). */
const PACKAGES = ['core', 'adapter', 'broker', 'issuer', 'cli'] as const;

interface PackedFile {
  path: string;
}
interface PackResult {
  name: string;
  version: string;
  filename: string;
  files: PackedFile[];
}
interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment without the npm_* variables of an enclosing `npm test`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function run(cmd: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv()): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

async function waitFor200(url: string, deadlineMs: number): Promise<void> {
  let last = '';
  while (Date.now() < deadlineMs) {
    try {
      const res = await fetch(url);
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${url} never answered 200 (last: ${last})`);
}

test('the packed packages install alone and run: trustplane --version, bundle tooling, adapter (healthz/readyz, a verified request, SIGTERM → 0), broker --help', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-pack-'));
  try {
    // 1. npm pack, as the image build stage does (dist/ is already built by `npm run build`).
    const packDir = join(dir, 'pack');
    mkdirSync(packDir);
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir, ...PACKAGES.flatMap((p) => ['-w', `@trustplane/${p}`])], repoRoot);
    assert.equal(pack.code, 0, `npm pack: ${pack.stderr}`);
    const packed = JSON.parse(pack.stdout) as PackResult[];
    assert.deepEqual(packed.map((p) => p.name).sort(), PACKAGES.map((p) => `@trustplane/${p}`).sort());
    for (const p of packed) {
      const files = new Set(p.files.map((f) => f.path));
      const where = `${p.name} tarball`;
      assert.ok(files.has('package.json') && files.has('dist/src/index.js'), `${where}: package.json and dist/src/index.js`);
      const manifest = readJson<{ main?: string; bin?: Record<string, string>; exports?: Record<string, { default?: string }> }>(join(repoRoot, 'packages', p.name.replace('@trustplane/', ''), 'package.json'));
      for (const target of [manifest.main, ...Object.values(manifest.bin ?? {}), ...Object.values(manifest.exports ?? {}).map((e) => e.default)]) {
        if (target !== undefined) assert.ok(files.has(target.replace(/^\.\//, '')), `${where}: ${target} (named in package.json) is packed`);
      }
      assert.ok(![...files].some((f) => /(^|\/)test\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts'))), `${where}: no tests or TypeScript sources`);
    }
    // Files read at run time beside the code (READ the code: fileURLToPath/readFileSync of package files).
    const filesOf = (name: string): Set<string> => new Set(packed.find((p) => p.name === `@trustplane/${name}`)!.files.map((f) => f.path));
    assert.ok(filesOf('broker').has('proto/workload.proto'), 'broker: proto/workload.proto (loaded by the SPIFFE Workload API client)');
    assert.ok(filesOf('cli').has('package.json'), 'cli: package.json (read by --version)');

    // 2. Install only the tarballs into an empty project: production dependencies, no scripts.
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'trustplane-pack-test', version: '0.0.0', private: true }));
    const install = await run('npm', ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...packed.map((p) => join(packDir, p.filename))], app);
    assert.equal(install.code, 0, `npm install: ${install.stderr}`);
    for (const dev of ['@trustplane/testkit', 'typescript', 'fast-check', 'eslint']) assert.ok(!existsSync(join(app, 'node_modules', dev)), `${dev} is not installed (dev only)`);
    const cliManifest = readJson<{ version: string; bin: Record<string, string> }>(join(repoRoot, 'packages/cli/package.json'));
    for (const bin of Object.keys(cliManifest.bin)) assert.ok(existsSync(join(app, 'node_modules/.bin', bin)), `bin ${bin} is linked`);
    const bin = (name: string): string => join(app, 'node_modules/.bin', name);

    // 3. The installed CLI, and 4. keys made with its own commands (each run is a cold start: in parallel).
    const work = join(dir, 'work');
    mkdirSync(work);
    const genKey = async (file: string, kid: string): Promise<string> => {
      const r = await run(bin('trustplane'), ['gen-key', '--out', file, '--kid', kid, '--json'], work);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { public_key_b64url: string }).public_key_b64url;
    };
    const [version, brokerHelp, sodium, signerPub, clientPub] = await Promise.all([
      run(bin('trustplane'), ['--version'], app),
      run(bin('trustplane-broker'), ['--help'], app),
      // sodium-native installs without its (absent) install script: its prebuilt binary loads.
      run(process.execPath, ['--input-type=module', '-e', "import { sodiumAvailable } from '@trustplane/core'; console.log(sodiumAvailable())"], app),
      genKey('bundle-signer.key', 'bundle-signer-1'),
      genKey('client.key', 'client-key-1'),
    ]);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), cliManifest.version);
    assert.equal(brokerHelp.code, 0, brokerHelp.stderr);
    assert.match(brokerHelp.stdout, /--socket <path>/);
    assert.equal(sodium.code, 0, sodium.stderr);
    assert.equal(sodium.stdout.trim(), 'true', 'the optional sodium-native backend loads from the installed tree');

    // Signed bundles (docs/bundles.md): build the skeletons, sign both.
    const issuer = 'https://issuer.example/software-jwks';
    writeFileSync(
      join(work, 'bundle-config.json'),
      JSON.stringify({
        version: 'trustplane-bundle-config-v1',
        policy_id: 'pack-test',
        policy_version: 1,
        trust_domain: 'example.local',
        defaults: { required_key_binding: 'software', freshness_class: 'offline-ok' },
        issuers: [{ issuer, source_type: 'software_jwks', keys: [{ kid: 'client-key-1', alg: 'EdDSA', public_key_b64url: clientPub }] }],
        apis: [{ api_id: 'orders-api', audience: 'orders-api', base_url: 'https://orders.example' }],
        route_groups: [
          {
            route_group_id: 'orders-read',
            api_id: 'orders-api',
            scopes: ['orders:read'],
            routes: [{ route_id: 'orders.search', method: 'GET', path_template: '/v1/orders/search', allowed_sources: [{ issuer, subject_exact: 'service:orders-client' }] }],
          },
        ],
        revocations: [],
      }),
    );
    const cli = async (args: readonly string[]): Promise<void> => {
      const r = await run(bin('trustplane'), args, work);
      assert.equal(r.code, 0, `trustplane ${args.slice(0, 2).join(' ')}: ${r.stderr}`);
    };
    await cli(['bundle', 'build', '--config', 'bundle-config.json', '--out', 'policy-bundle.unsigned.json', '--out-trust-material', 'trust-material.unsigned.json']);
    const signWith = ['--private-key', 'bundle-signer.key', '--kid', 'bundle-signer-1', '--signer-issuer', 'https://ops.example/bundles'];
    await Promise.all([
      cli(['bundle', 'sign', '--trust-material', 'trust-material.unsigned.json', '--out', 'trust-material.json', ...signWith]),
      cli(['bundle', 'sign', '--policy-bundle', 'policy-bundle.unsigned.json', '--out', 'policy-bundle.json', ...signWith]),
    ]);

    // 5. The installed adapter in front of a tiny upstream, configured by environment (as in the image).
    const seen: IncomingMessage[] = [];
    const upstream = createServer((req, res) => {
      seen.push(req);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"orders":[]}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = await freePort();
    const adminPort = await freePort();
    const adapter = spawn(bin('trustplane-adapter'), [], {
      cwd: work,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: cleanEnv({
        TRUSTPLANE_LISTEN: `127.0.0.1:${port}`,
        TRUSTPLANE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
        TRUSTPLANE_UPSTREAM: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
        TRUSTPLANE_BUNDLE: join(work, 'trust-material.json'),
        TRUSTPLANE_POLICY_BUNDLE: join(work, 'policy-bundle.json'),
        TRUSTPLANE_BUNDLE_SIGNATURE_PUBLIC_KEY: `bundle-signer-1=${signerPub}`,
        TRUSTPLANE_AUDIT_LOG: 'off',
      }),
    });
    let stderr = '';
    adapter.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => adapter.once('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 15_000;
      const signing = run(bin('trustplane'), ['sign', '--private-key', 'client.key', '--kid', 'client-key-1', '--issuer', issuer, '--subject', 'service:orders-client', '--audience', 'orders-api', '--trust-domain', 'example.local', '--route-id', 'orders.search', '--method', 'GET', '--url', 'https://orders.example/v1/orders/search', '--json'], work);
      await waitFor200(`http://127.0.0.1:${adminPort}/healthz`, deadline);
      await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, deadline);
      const signed = await signing;
      assert.equal(signed.code, 0, signed.stderr);
      const headers = JSON.parse(signed.stdout) as Record<string, string>;
      const ok = await fetch(`http://127.0.0.1:${port}/v1/orders/search`, { headers });
      assert.equal(ok.status, 200, await ok.clone().text());
      assert.equal(await ok.text(), '{"orders":[]}');
      const replay = await fetch(`http://127.0.0.1:${port}/v1/orders/search`, { headers });
      assert.equal(replay.status, 403);
      assert.deepEqual(await replay.json(), { allowed: false, reason: 'jti_replay' });
      const unsigned = await fetch(`http://127.0.0.1:${port}/v1/orders/search`);
      assert.equal(unsigned.status, 401);
      await unsigned.body?.cancel();
      assert.equal(seen.length, 1, 'only the verified request reached the upstream');
      assert.equal(seen[0]!.headers['x-trustplane-subject'], 'service:orders-client');
    } finally {
      adapter.kill('SIGTERM');
      const code = await exited;
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
      assert.equal(code, 0, `trustplane-adapter exit code after SIGTERM (stderr: ${stderr})`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
