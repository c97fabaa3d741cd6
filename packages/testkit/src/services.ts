/**
 * Real services for integration tests: a redis-server on a free loopback port (stopped by PID),
 * and an HTTP upstream on loopback that records every request that reaches it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createNetServer, connect, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
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

/** Start a throwaway redis-server (no persistence) on a free loopback port. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tp-redis-'));
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const deadline = Date.now() + 5000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => {
        c.end('PING\r\n');
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
  /** Replace the handler's behaviour (default: 200 with a JSON echo). */
  behaviour: 'echo' | 'hang' | 'reset';
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
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'orders', connection: 'keep-alive, x-hop', 'x-hop': 'secret-hop' });
      res.end(JSON.stringify({ method: rec.method, url: rec.url, subject: req.headers['x-trustplane-subject'] ?? null, body: rec.body.toString() }));
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
