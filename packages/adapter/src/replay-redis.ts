/**
 * Shared replay store on Redis: `SET key 1 NX PXAT <exp+skew ms>` is one atomic command, so
 * any number of adapter processes consume a jti exactly once. Fail closed: no offline queue, a
 * short command timeout, and any error becomes ReplayStoreError('replay_store_unavailable') —
 * an error is never taken as "not seen". Works with a single node (redis://, rediss://), a
 * Sentinel set (redis+sentinel://) and a Cluster (redis+cluster://) URL.
 */
import { Redis, Cluster, type RedisOptions } from 'ioredis';
import { ReplayStoreError, type ConsumeResult, type ReplayStore } from '@trustplane/core';

export interface RedisReplayStoreOptions {
  /** Command timeout in ms (default 250): past it the request is denied with 503. */
  commandTimeoutMs?: number;
  /** Key prefix (default `trustplane:jti:`). */
  prefix?: string;
  connectTimeoutMs?: number;
}

type Client = Redis | Cluster;

/** Parse our Redis URL forms into an ioredis client (lazy: connects on first use). */
export function createRedisClient(url: string, opts: RedisReplayStoreOptions = {}): Client {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs ?? 250,
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    lazyConnect: false,
    // Commands issued in one event-loop turn share one write (many requests in flight).
    enableAutoPipelining: true,
    // Keep trying to reconnect in the background; requests fail closed meanwhile.
    retryStrategy: (times) => Math.min(50 * times, 1000),
  };
  // URL() cannot hold comma-separated hosts (Sentinel/Cluster seeds): read them from the raw
  // text, and parse the rest with the host list replaced by a placeholder.
  const m = /^[a-z+]+:\/\/(?:[^@/]*@)?([^/?#]+)/.exec(url);
  if (m === null) throw new TypeError('replay store URL must look like redis://host:port');
  const raw = m[1]!;
  const hostStart = m[0].length - raw.length;
  const u = new URL(`${url.slice(0, hostStart)}seed-hosts${url.slice(m[0].length)}`);
  const password = u.password !== '' ? decodeURIComponent(u.password) : undefined;
  const username = u.username !== '' ? decodeURIComponent(u.username) : undefined;
  const auth = { ...(password !== undefined ? { password } : {}), ...(username !== undefined ? { username } : {}) };
  const list = raw.split(',').map((h) => {
    const i = h.lastIndexOf(':');
    return i > 0 ? { host: h.slice(0, i), port: Number(h.slice(i + 1)) } : { host: h, port: 6379 };
  });
  switch (u.protocol) {
    case 'redis:':
    case 'rediss:': {
      const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
      return new Redis({ ...common, ...auth, host: list[0]!.host, port: list[0]!.port, db, ...(u.protocol === 'rediss:' ? { tls: {} } : {}) });
    }
    case 'redis+sentinel:': {
      const name = u.searchParams.get('name') ?? u.pathname.slice(1);
      if (name === '') throw new TypeError('redis+sentinel:// URL needs the master name as ?name= or /name');
      return new Redis({ ...common, ...auth, sentinels: list, name });
    }
    case 'redis+cluster:':
      return new Cluster(list, { enableOfflineQueue: false, enableAutoPipelining: true, redisOptions: { ...common, ...auth } });
    default:
      throw new TypeError(`unsupported replay store URL scheme ${u.protocol} (use redis://, rediss://, redis+sentinel:// or redis+cluster://)`);
  }
}

export class RedisReplayStore implements ReplayStore {
  readonly client: Client;
  private readonly prefix: string;

  constructor(urlOrClient: string | Client, opts: RedisReplayStoreOptions = {}) {
    this.client = typeof urlOrClient === 'string' ? createRedisClient(urlOrClient, opts) : urlOrClient;
    this.prefix = opts.prefix ?? 'trustplane:jti:';
    // Errors surface per command; without a listener ioredis would log them as unhandled.
    this.client.on('error', () => undefined);
  }

  async consume(key: string, expiresAtMs: number): Promise<ConsumeResult> {
    let reply: string | null;
    try {
      // The key is 16 raw bytes (core replayKey); hex keeps it printable in redis-cli.
      reply = await this.client.set(this.prefix + Buffer.from(key, 'latin1').toString('hex'), '1', 'PXAT', Math.ceil(expiresAtMs), 'NX');
    } catch (err) {
      throw new ReplayStoreError('replay_store_unavailable', `redis: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return reply === 'OK' ? 'fresh' : 'replay';
  }

  async ping(): Promise<void> {
    try {
      await this.client.ping();
    } catch (err) {
      throw new ReplayStoreError('replay_store_unavailable', `redis: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /**
   * Wait until the connection is ready (startup). Commands sent before then are refused at once
   * (no offline queue), which is fail-closed but would deny the first requests needlessly.
   */
  ready(timeoutMs = 2000): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.client.removeListener('ready', onReady);
        reject(new ReplayStoreError('replay_store_unavailable', `redis: not ready after ${timeoutMs} ms (status ${this.client.status})`));
      }, timeoutMs);
      timer.unref();
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.client.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    if (this.client.status !== 'ready') {
      this.client.disconnect();
      return;
    }
    // QUIT politely, but never let shutdown hang on an unresponsive server.
    const quit = this.client.quit().then(
      () => undefined,
      () => undefined,
    );
    const timeout = new Promise<void>((r) => setTimeout(r, 500).unref());
    await Promise.race([quit, timeout]);
    this.client.disconnect();
  }
}
