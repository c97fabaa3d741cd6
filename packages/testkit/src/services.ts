/**
 * Real services for integration tests: a redis-server on a free loopback port (stopped by PID),
 * and an HTTP upstream on loopback that records every request that reaches it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createNetServer, connect, type AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether redis-server exists here. In CI it must (the test fails loudly instead of skipping). */
export function redisAvailable(): boolean {
  const ok = spawnSync('redis-server', ['--version']).status === 0;
  if (!ok && process.env['CI'] === 'true') throw new Error('redis-server is required in CI (.ci/run installs it)');
  if (!ok) console.warn('\n*** WARNING: redis-server is not installed: Redis integration tests are SKIPPED locally (they run in CI). apt-get install redis-server ***\n');
  return ok;
}

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1', () => {
      c.end('PING\r\n');
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** One redis-server process (extra args appended), up and answering on `port`. */
async function spawnRedis(port: number, dir: string, extra: readonly string[], configFile?: string): Promise<ChildProcess> {
  const args = [...(configFile !== undefined ? [configFile] : []), '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra];
  const child: ChildProcess = spawn('redis-server', args, { stdio: 'ignore' });
  const deadline = Date.now() + 5000;
  while (!(await portOpen(port))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`redis-server ${extra.join(' ')} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

async function stopAll(children: readonly ChildProcess[], dir: string): Promise<void> {
  await Promise.all(
    children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }),
  );
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Start a throwaway redis-server on a free loopback port: no persistence, unless `extra`
 * arguments (appended, so they win) turn it on, e.g. `['--appendonly', 'yes']` or
 * `['--save', '60 1']`.
 */
export async function startRedis(extra: readonly string[] = []): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tp-redis-'));
  const child = await spawnRedis(port, dir, extra);
  return { url: `redis://127.0.0.1:${port}`, port, stop: () => stopAll([child], dir) };
}

export interface RestartableRedis extends RedisServer {
  /** SIGKILL the server (no shutdown save, like a crash or an OOM kill); resolves once it has exited. */
  kill(): Promise<void>;
  /** Start it again on the same port and directory (it replays its AOF); resolves once it answers. */
  restart(): Promise<void>;
}

/**
 * A redis-server that persists every write before replying (`appendonly yes`, `appendfsync
 * always`: the deployment rule for a replay store), which a test can kill and restart.
 */
export async function startPersistentRedis(): Promise<RestartableRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tp-redis-aof-'));
  const extra = ['--appendonly', 'yes', '--appendfsync', 'always'];
  let child = await spawnRedis(port, dir, extra);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    async restart() {
      child = await spawnRedis(port, dir, extra);
    },
    stop: () => stopAll([child], dir),
  };
}

/** A master plus one real Sentinel monitoring it as `mymaster`; `url` is the redis+sentinel:// URL. */
export async function startRedisSentinel(): Promise<RedisServer & { masterPort: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tp-sentinel-'));
  const masterPort = await freePort();
  const master = await spawnRedis(masterPort, dir, []);
  const port = await freePort();
  // Sentinel rewrites its config file, so it gets its own writable one.
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1\nsentinel down-after-milliseconds mymaster 60000\n`);
  const sentinel = await spawnRedis(port, dir, ['--sentinel'], conf).catch(async (err: unknown) => {
    await stopAll([master], dir);
    throw err;
  });
  return { url: `redis+sentinel://127.0.0.1:${port}/mymaster`, port, masterPort, stop: () => stopAll([sentinel, master], dir) };
}

/** Three real cluster-mode masters with all 16384 slots assigned; `url` is the redis+cluster:// URL. */
export async function startRedisCluster(): Promise<RedisServer & { ports: number[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'tp-cluster-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const children: ChildProcess[] = [];
  try {
    for (const p of ports) {
      mkdirSync(join(dir, String(p)));
      children.push(await spawnRedis(p, join(dir, String(p)), ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']));
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 20_000 });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout} ${create.stderr}`);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const states = ports.map((p) => spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout);
      if (states.every((s) => s.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error('the Redis cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stopAll(children, dir);
    throw err;
  }
  return { url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, port: ports[0]!, ports, stop: () => stopAll(children, dir) };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
}

export interface EchoUpstream {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Replace the handler's behaviour (default: 200 with a JSON echo; 'slow': the same 150 ms later). */
  behaviour: 'echo' | 'hang' | 'reset' | 'slow';
  close(): Promise<void>;
}

/** An upstream on loopback that records each request and echoes what it received as JSON. */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const requests: RecordedRequest[] = [];
  const state: { behaviour: EchoUpstream['behaviour'] } = { behaviour: 'echo' };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
      requests.push(rec);
      if (state.behaviour === 'hang') return;
      if (state.behaviour === 'reset') {
        req.socket.destroy();
        return;
      }
      const respond = () => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'orders', connection: 'keep-alive, x-hop', 'x-hop': 'secret-hop' });
        res.end(JSON.stringify({ method: rec.method, url: rec.url, subject: req.headers['x-trustplane-subject'] ?? null, body: rec.body.toString() }));
      };
      if (state.behaviour === 'slow') setTimeout(respond, 150);
      else respond();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get behaviour() {
      return state.behaviour;
    },
    set behaviour(b) {
      state.behaviour = b;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
