/**
 * The in-memory replay store shared by the adapter's worker processes (`--workers n --replay
 * memory`). ONE store lives in the primary process; each worker's `ClusterReplayStore` asks it
 * over the cluster IPC channel, and the primary answers messages one at a time, so a jti is
 * consumed exactly once across all workers (SPEC §5). A worker batches the questions of one
 * event-loop turn into one message (one write, one parse on each side instead of one per
 * request). Fail closed: no answer within the timeout,
 * a lost channel or a store error deny the request (`replay_store_unavailable`, 503) — never
 * "not seen".
 */
import cluster, { type Worker } from 'node:cluster';
import { MonotonicClock, REPLAY_KEY_LENGTH, ReplayStoreError, systemClock, type Clock, type ConsumeResult, type ReplayStore } from '@trustplane/core';
import { TurnQueue } from './turn-queue.js';

type Verdict = ConsumeResult | 'pong' | 'full' | 'error';

/**
 * Worker → primary: questions in order, `[id, key, expiresAtMs]` to consume (key: core's
 * 20-character replay key, with its issuer tag: the primary's store keeps per-issuer shares)
 * or `[id]` to ping.
 */
interface ReplayRequest {
  tp: 'replay';
  q: ([number, string, number] | [number])[];
}

/** Primary → worker: `[id, verdict]` or `[id, verdict, message]`, in the order asked. */
interface ReplayAnswer {
  tp: 'replay-answer';
  a: ([number, Verdict] | [number, Verdict, string])[];
}

function isRequest(msg: unknown): msg is ReplayRequest {
  return typeof msg === 'object' && msg !== null && (msg as { tp?: unknown }).tp === 'replay' && Array.isArray((msg as { q?: unknown }).q);
}

function isAnswer(msg: unknown): msg is ReplayAnswer {
  return typeof msg === 'object' && msg !== null && (msg as { tp?: unknown }).tp === 'replay-answer' && Array.isArray((msg as { a?: unknown }).a);
}

/** The worker's end of the IPC channel (`process` in a cluster worker; a fake in tests). */
export interface ReplayChannel {
  readonly connected: boolean;
  send(message: unknown, callback: (err: Error | null) => void): void;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
  removeListener(event: 'message', listener: (message: unknown) => void): unknown;
  removeListener(event: 'disconnect', listener: () => void): unknown;
}

export interface ClusterReplayStoreOptions {
  /** Past this many ms without an answer the request is denied (default 250, as for Redis). */
  timeoutMs?: number;
  /** Default: this worker process's IPC channel. */
  channel?: ReplayChannel;
}

function processChannel(): ReplayChannel {
  const send = process.send?.bind(process);
  if (send === undefined) throw new TypeError('ClusterReplayStore needs an IPC channel: run it in a cluster worker');
  return {
    get connected() {
      return process.connected;
    },
    send: (message, callback) => void send(message, undefined, undefined, callback),
    on: (event: 'message' | 'disconnect', listener: (m: unknown) => void) => process.on(event, listener),
    removeListener: (event: 'message' | 'disconnect', listener: (m: unknown) => void) => process.removeListener(event, listener),
  };
}

interface Pending {
  resolve(r: ConsumeResult | 'pong'): void;
  reject(err: ReplayStoreError): void;
  deadline: number;
}

/** A worker's view of the primary-owned replay store. */
export class ClusterReplayStore implements ReplayStore {
  private readonly channel: ReplayChannel;
  private readonly timeoutMs: number;
  /** Insertion order is deadline order (one timeout for all), so expiry checks stop early. */
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /**
   * Questions asked together (the adapter's verification batch consumes in one loop) go out as
   * one message, as soon as that code returns (process.nextTick): no wait for another turn.
   */
  private readonly outbox = new TurnQueue<[number, string, number] | [number]>((q) => this.send(q), (fn) => process.nextTick(fn));

  constructor(opts: ClusterReplayStoreOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 250;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new TypeError('timeoutMs must be a positive number');
    this.channel = opts.channel ?? processChannel();
    this.channel.on('message', this.onMessage);
    this.channel.on('disconnect', this.onDisconnect);
  }

  private readonly onMessage = (msg: unknown): void => {
    if (!isAnswer(msg)) return;
    for (const [id, r, m] of msg.a) {
      const p = this.pending.get(id);
      if (p === undefined) continue; // answered after its timeout: the request was already denied
      this.pending.delete(id);
      switch (r) {
        case 'fresh':
        case 'replay':
        case 'pong':
          p.resolve(r);
          break;
        case 'full':
          p.reject(new ReplayStoreError('replay_store_full', m ?? 'the replay store is full'));
          break;
        case 'error':
          p.reject(new ReplayStoreError('replay_store_unavailable', `primary replay store: ${m ?? 'error'}`));
          break;
        default:
          p.reject(new ReplayStoreError('replay_store_unavailable', 'unexpected answer from the primary process'));
      }
    }
  };

  private readonly onDisconnect = (): void => this.failAll('the IPC channel to the primary process is closed');

  private failAll(why: string): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new ReplayStoreError('replay_store_unavailable', why));
    }
  }

  private readonly expire = (): void => {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      p.reject(new ReplayStoreError('replay_store_unavailable', `the primary process did not answer within ${this.timeoutMs} ms`));
    }
    if (this.pending.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  };

  private send(q: ([number, string, number] | [number])[]): void {
    if (this.closed) return;
    if (!this.channel.connected) {
      this.failAll('the IPC channel to the primary process is closed');
      return;
    }
    this.channel.send({ tp: 'replay', q } satisfies ReplayRequest, (err) => {
      if (err === null) return;
      for (const [id] of q) {
        const p = this.pending.get(id);
        if (p === undefined) continue;
        this.pending.delete(id);
        p.reject(new ReplayStoreError('replay_store_unavailable', `cannot reach the primary process: ${err.message}`, { cause: err }));
      }
    });
  }

  private ask(question: [string, number] | []): Promise<ConsumeResult | 'pong'> {
    if (this.closed) return Promise.reject(new ReplayStoreError('replay_store_unavailable', 'replay store closed'));
    if (!this.channel.connected) return Promise.reject(new ReplayStoreError('replay_store_unavailable', 'the IPC channel to the primary process is closed'));
    // One coarse timer for all requests instead of a setTimeout per request; it runs only while
    // answers are outstanding.
    this.timer ??= setInterval(this.expire, Math.max(5, Math.floor(this.timeoutMs / 4)));
    const id = this.nextId++;
    this.outbox.push([id, ...question]);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: performance.now() + this.timeoutMs });
    });
  }

  async consume(key: string, expiresAtMs: number): Promise<ConsumeResult> {
    const r = await this.ask([key, expiresAtMs]);
    if (r === 'pong') throw new ReplayStoreError('replay_store_unavailable', 'unexpected answer from the primary process');
    return r;
  }

  async ping(): Promise<void> {
    await this.ask([]);
  }

  close(): Promise<void> {
    this.closed = true;
    this.outbox.clear();
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.failAll('replay store closed');
    this.channel.removeListener('message', this.onMessage);
    this.channel.removeListener('disconnect', this.onDisconnect);
    return Promise.resolve();
  }
}

/** Where the primary sends an answer (a cluster Worker; a fake in tests). */
export interface ReplayPeer {
  send(message: unknown, callback: (err: Error | null) => void): unknown;
}

export interface ClusterReplayServer {
  /** Answer one message from a worker; returns false if it was not a replay message. */
  handle(peer: ReplayPeer, message: unknown): boolean;
  /** Stop listening to cluster messages (the store itself is left open). */
  close(): void;
}

export interface ServeClusterReplayOptions {
  /**
   * The primary's own clock judges liveness (one clock for the one store, monotonic), not the
   * worker's `nowMs`.
   */
  clock?: Clock;
  /** Listen to node:cluster workers' messages (default true; false for an injected transport). */
  attach?: boolean;
}

/**
 * The primary-side handler: consume in `store` on behalf of the workers. The store must answer
 * synchronously or in order (MemoryReplayStore does); messages are handled one at a time.
 */
export function serveClusterReplay(store: ReplayStore, opts: ServeClusterReplayOptions = {}): ClusterReplayServer {
  const clock = new MonotonicClock(opts.clock ?? systemClock);
  const ignore = (): void => undefined; // a worker that died meanwhile: its requests died with it
  const failure = (id: number, err: unknown): [number, Verdict, string] =>
    err instanceof ReplayStoreError && err.reason === 'replay_store_full' ? [id, 'full', err.message] : [id, 'error', err instanceof Error ? err.message : String(err)];
  function handle(peer: ReplayPeer, msg: unknown): boolean {
    if (!isRequest(msg)) return false;
    const answers: (ReplayAnswer['a'][number] | Promise<ReplayAnswer['a'][number]>)[] = [];
    let async = false;
    for (const item of msg.q) {
      const [id, key, exp] = item as [unknown, unknown, unknown];
      if (typeof id !== 'number') continue;
      if (key === undefined) {
        const ping = store.ping?.();
        if (ping === undefined) answers.push([id, 'pong']);
        else {
          async = true;
          answers.push(ping.then((): [number, Verdict] => [id, 'pong'], (err: unknown) => failure(id, err)));
        }
        continue;
      }
      if (typeof key !== 'string' || key.length !== REPLAY_KEY_LENGTH || typeof exp !== 'number' || !Number.isFinite(exp)) {
        answers.push([id, 'error', 'malformed replay request']);
        continue;
      }
      try {
        // Consumed here, in arrival order: this is what makes a jti single-use across workers.
        const r = store.consume(key, exp, clock.now());
        if (typeof r === 'string') answers.push([id, r]);
        else {
          async = true;
          answers.push(r.then((v): [number, Verdict] => [id, v], (err: unknown) => failure(id, err)));
        }
      } catch (err) {
        answers.push(failure(id, err));
      }
    }
    if (!async) peer.send({ tp: 'replay-answer', a: answers as ReplayAnswer['a'] } satisfies ReplayAnswer, ignore);
    else void Promise.all(answers.map((x) => Promise.resolve(x))).then((a) => peer.send({ tp: 'replay-answer', a } satisfies ReplayAnswer, ignore));
    return true;
  }
  const onMessage = (worker: Worker, msg: unknown) => void handle(worker, msg);
  if (opts.attach ?? true) cluster.on('message', onMessage);
  return { handle, close: () => void cluster.removeListener('message', onMessage) };
}
