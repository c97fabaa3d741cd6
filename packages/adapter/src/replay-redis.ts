/**
 * Shared replay store on Redis: `SET key 1 NX PXAT <exp+skew ms>` is one atomic command, so
 * any number of adapter processes consume a jti exactly once. Fail closed: no offline queue, a
 * short command timeout, and any error becomes ReplayStoreError('replay_store_unavailable') —
 * an error is never taken as "not seen". Works with a single node (redis://, rediss://), a
 * Sentinel set (redis+sentinel://) and a Cluster (redis+cluster://) URL.
 */
import { Redis, Cluster, type RedisOptions } from 'ioredis';
import { REPLAY_RECORD_KEY_LENGTH, ReplayStoreError, type ConsumeResult, type ReplayStore } from '@trustplane/core';
import { TurnQueue } from './turn-queue.js';

export interface RedisReplayStoreOptions {
  /** Command timeout in ms (default 250): past it the request is denied with 503. */
  commandTimeoutMs?: number;
  /** Key prefix (default `trustplane:jti:`). */
  prefix?: string;
  connectTimeoutMs?: number;
}

type Client = Redis | Cluster;

/**
 * Whether Redis keeps consumed jtis across its own restart: `on` with AOF (`appendonly yes`)
 * and/or RDB snapshots (`save` not empty); `off` with neither — a restart forgets every jti, so
 * passports still within their lifetime can be replayed once more; `unknown` when Redis refuses
 * `CONFIG GET` (managed services often do) or does not answer.
 */
export type RedisPersistence = { state: 'on'; aof: boolean; rdb: boolean } | { state: 'off'; nodes: string[] } | { state: 'unknown'; error: string };

/** Parse our Redis URL forms into an ioredis client (lazy: connects on first use). */
export function createRedisClient(url: string, opts: RedisReplayStoreOptions = {}): Client {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs ?? 250,
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    lazyConnect: false,
    // No auto-pipelining on a single node: the store already sends one turn's consumes as one
    // script call, and ioredis's auto-pipeline defers each write to setImmediate through a
    // Pipeline object (bench:http, one core, A/B: c=1 p50 0.83–0.89 → 0.76 ms, c=64 441–476 →
    // 424–436 µs/request). A Cluster spreads keys over slots and keeps it (below).
    enableAutoPipelining: false,
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

/**
 * SET NX PXAT for every key of a batch, in one script call: each key is still set atomically
 * and independently (a script runs atomically in Redis), and the reply says, per key, whether
 * this call set it (1) or it was already there (0).
 */
const CONSUME_MANY = `local r = {}
for i, k in ipairs(KEYS) do
  r[i] = redis.call('SET', k, '1', 'PXAT', ARGV[i], 'NX') and 1 or 0
end
return r`;

interface PendingConsume {
  readonly key: string;
  readonly expiresAtMs: number;
  readonly resolve: (r: ConsumeResult) => void;
  readonly reject: (err: unknown) => void;
}

type ScriptClient = Redis & { tpConsumeMany(numKeys: number, ...keysThenArgs: string[]): Promise<number[]> };

export class RedisReplayStore implements ReplayStore {
  readonly client: Client;
  private readonly prefix: string;
  /** Consumes asked for in this turn of the event loop (standalone and Sentinel only). */
  private readonly queue = new TurnQueue<PendingConsume>((batch) => this.consumeBatch(batch), (fn) => process.nextTick(fn));

  constructor(urlOrClient: string | Client, opts: RedisReplayStoreOptions = {}) {
    this.client = typeof urlOrClient === 'string' ? createRedisClient(urlOrClient, opts) : urlOrClient;
    this.prefix = opts.prefix ?? 'trustplane:jti:';
    // Errors surface per command; without a listener ioredis would log them as unhandled.
    this.client.on('error', () => undefined);
    // EVALSHA, falling back to EVAL once if the script cache was flushed (ioredis does this).
    if (!(this.client instanceof Cluster)) this.client.defineCommand('tpConsumeMany', { lua: CONSUME_MANY });
  }

  /**
   * The Redis key of a replay key: its 16-byte record part (core replayKey; the issuer tag after
   * it is for in-memory shares), hex for redis-cli — the same Redis keys as before the tag, so a
   * rolling upgrade keeps every consumed jti.
   */
  private redisKey(key: string): string {
    return this.prefix + Buffer.from(key.slice(0, REPLAY_RECORD_KEY_LENGTH), 'latin1').toString('hex');
  }

  /**
   * Consume one key. On a standalone or Sentinel-managed Redis, the consumes asked for in one
   * event-loop turn (the adapter verifies a turn's requests together) go out as ONE script call;
   * in a Redis Cluster keys live in different slots, so each is its own (auto-pipelined) SET.
   */
  consume(key: string, expiresAtMs: number): Promise<ConsumeResult> {
    if (this.client instanceof Cluster) return this.consumeOne(key, expiresAtMs);
    return new Promise((resolve, reject) => this.queue.push({ key, expiresAtMs, resolve, reject }));
  }

  private consumeBatch(batch: PendingConsume[]): void {
    if (batch.length === 1) {
      const one = batch[0]!;
      this.consumeOne(one.key, one.expiresAtMs).then(one.resolve, one.reject);
      return;
    }
    const args: string[] = batch.map((p) => this.redisKey(p.key));
    for (const p of batch) args.push(String(Math.ceil(p.expiresAtMs)));
    (this.client as ScriptClient).tpConsumeMany(batch.length, ...args).then(
      (reply) => {
        if (!Array.isArray(reply) || reply.length !== batch.length) {
          const err = new ReplayStoreError('replay_store_unavailable', 'redis: unexpected reply to the consume script');
          for (const p of batch) p.reject(err);
          return;
        }
        batch.forEach((p, i) => p.resolve(reply[i] === 1 ? 'fresh' : 'replay'));
      },
      (err: unknown) => {
        const e = new ReplayStoreError('replay_store_unavailable', `redis: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        for (const p of batch) p.reject(e);
      },
    );
  }

  private async consumeOne(key: string, expiresAtMs: number): Promise<ConsumeResult> {
    let reply: string | null;
    try {
      reply = await this.client.set(this.redisKey(key), '1', 'PXAT', Math.ceil(expiresAtMs), 'NX');
    } catch (err) {
      throw new ReplayStoreError('replay_store_unavailable', `redis: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return reply === 'OK' ? 'fresh' : 'replay';
  }

  /** Ask Redis (every master of a Cluster) whether it persists its keys; never throws. */
  async checkPersistence(): Promise<RedisPersistence> {
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    let aof = true;
    let rdb = true;
    const off: string[] = [];
    try {
      for (const node of nodes) {
        const [appendonly, save] = await Promise.all([node.config('GET', 'appendonly'), node.config('GET', 'save')]);
        const nodeAof = configValue(appendonly, 'appendonly') === 'yes';
        const nodeRdb = (configValue(save, 'save') ?? '').trim() !== '';
        aof &&= nodeAof;
        rdb &&= nodeRdb;
        if (!nodeAof && !nodeRdb) off.push(`${node.options.host ?? '?'}:${node.options.port ?? '?'}`);
      }
    } catch (err) {
      return { state: 'unknown', error: err instanceof Error ? err.message : String(err) };
    }
    if (nodes.length === 0) return { state: 'unknown', error: 'no Redis node to ask' };
    return off.length > 0 ? { state: 'off', nodes: off } : { state: 'on', aof, rdb };
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

/** The value of `name` in a CONFIG GET reply (`[name, value]`), or undefined. */
function configValue(reply: unknown, name: string): string | undefined {
  if (!Array.isArray(reply)) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) if (reply[i] === name && typeof reply[i + 1] === 'string') return reply[i + 1] as string;
  return undefined;
}
