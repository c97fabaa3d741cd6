/**
 * Using every core: the adapter as a node:cluster primary supervising N worker processes that
 * each run the full adapter (startAdapter) on the shared listen port; the cluster's round-robin
 * hands each new connection to the next worker. The primary verifies nothing itself: it forks
 * and restarts workers (exponential backoff; it gives up and exits non-zero on a crash loop),
 * owns the in-memory replay store when there is one (replay-cluster.ts), forwards SIGHUP, stops
 * every worker gracefully, and serves the admin port: `/readyz` asks every worker, `/metrics`
 * aggregates the workers' registries. See docs/architecture.md, "Using every core".
 *
 * Bundles: the primary decides. Given its `BundleWatcher` (`bundles`), the primary alone reads
 * the bundle files and the high-water mark; it hands each accepted pair's bytes, each
 * confirmation and each refusal to the workers, and a (re)started worker asks it for the current
 * pair before it listens (`followClusterBundles`). So no worker serves a pair the primary
 * refused, nor an older pair than the primary's, whatever the files say when it restarts.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Registry, type Aggregator } from 'prom-client';
import type { BundleConfirmedEvent, BundleFollower, BundleLoadedEvent, BundleRejectedEvent, BundleWatcher, PolicyProvider, ReplayStore } from '@trustplane/core';
import { serveClusterReplay, type ClusterReplayServer } from './replay-cluster.js';
import type { AdapterMetrics } from './metrics.js';
import { log } from './audit-sink.js';
import { startAdminServer, verifierReadiness } from './admin.js';

/** Set by the primary in each worker's environment: the worker's slot (0 … n-1). */
export const WORKER_SLOT_ENV = 'TRUSTPLANE_WORKER_SLOT';

/** Whether this process is an adapter worker forked by startClusterPrimary. */
export function isAdapterWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_SLOT_ENV] !== undefined;
}

type FromWorker = { tp: 'worker-ready'; url: string } | { tp: 'worker-failed'; error: string } | { tp: 'status'; id: number; problems: string[] } | { tp: 'metrics'; id: number; metrics?: unknown[]; error?: string } | { tp: 'bundle-req' };
type ToWorker = { tp: 'status-req'; id: number } | { tp: 'metrics-req'; id: number };
/** The primary's bundle decisions, pushed to the workers (pair bytes as base64). */
type BundleToWorker =
  | { tp: 'bundle-pair'; trust: string; bundle: string; confirmedAtMs: number }
  | { tp: 'bundle-confirm'; contentSha256: string; atMs: number }
  | { tp: 'bundle-rejected'; reason: string; detail: string; atMs: number };

function isFromWorker(msg: unknown): msg is FromWorker {
  const tp = typeof msg === 'object' && msg !== null ? (msg as { tp?: unknown }).tp : undefined;
  return tp === 'worker-ready' || tp === 'worker-failed' || tp === 'status' || tp === 'metrics' || tp === 'bundle-req';
}

/**
 * How the workers' series combine. Counters, histograms and memory add up (prom-client's
 * default); the bundle gauges must not (n workers × policy version is meaningless): the oldest
 * policy version and the largest bundle age in force in any worker are what an operator needs.
 */
const AGGREGATORS: Record<string, Aggregator> = {
  trustplane_bundle_policy_version: 'min',
  trustplane_bundle_age_seconds: 'max',
};

export interface ClusterPrimaryOptions {
  /** Number of worker processes (>= 1). */
  workers: number;
  /** The script each worker runs, and its arguments; it must call `attachClusterWorker`. */
  exec: string;
  args?: readonly string[];
  /** Added to the inherited environment; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  /** Admin endpoints served by the primary; `undefined` disables them. */
  admin?: { host: string; port: number } | undefined;
  /** Owned by the primary and consumed by the workers over IPC (`--replay memory`). */
  replayStore?: ReplayStore | undefined;
  /**
   * The primary's own watcher of the bundle files: the workers then serve exactly the pairs it
   * accepts (they call `followClusterBundles`). Started by the caller; not closed here.
   */
  bundles?: BundleWatcher | undefined;
  /** First restart delay after a crash (doubles per recent crash of that worker; default 200 ms). */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  /** Give up (stop everything, exit code 1) when one worker crashes this often within the window. */
  crashLoop?: { crashes: number; windowMs: number };
  /** Time a worker gets to finish in-flight requests before it is killed (default 10 s + 5 s). */
  shutdownDeadlineMs?: number;
  /** Time the workers get to start listening (default 30 s). */
  startTimeoutMs?: number;
}

export interface RunningClusterPrimary {
  /** The shared listen address, as the workers report it. */
  readonly url: string;
  readonly adminUrl: string | undefined;
  /** PIDs of the running workers. */
  workerPids(): number[];
  /** Forward a bundle reload (SIGHUP) to every worker. */
  reload(): void;
  /** Turn readiness off (`/readyz` 503) while the workers keep serving: a shutdown delay. */
  drain(): void;
  /** Stop every worker gracefully; resolves with the exit code (0, or 1 after a crash loop). */
  stop(reason?: string): Promise<number>;
  /** Resolves with the exit code once everything has stopped (after stop() or a crash loop). */
  readonly done: Promise<number>;
}

interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  ready: boolean;
  crashes: number[];
  timer: NodeJS.Timeout | undefined;
}

/** Fork the workers and resolve once every one of them is listening. */
export async function startClusterPrimary(opts: ClusterPrimaryOptions): Promise<RunningClusterPrimary> {
  if (!cluster.isPrimary) throw new TypeError('startClusterPrimary must run in the primary process (not inside another cluster worker)');
  if (!Number.isSafeInteger(opts.workers) || opts.workers < 1) throw new TypeError('workers must be a positive integer');
  const restartDelay = opts.restartDelayMs ?? 200;
  const maxRestartDelay = opts.maxRestartDelayMs ?? 10_000;
  const crashLoop = opts.crashLoop ?? { crashes: 5, windowMs: 60_000 };
  const shutdownDeadline = opts.shutdownDeadlineMs ?? 10_000;

  const registry = new Registry();
  const workersGauge = new Gauge({ name: 'trustplane_workers', help: 'Adapter worker processes by state (configured, ready).', labelNames: ['state'], registers: [registry] });
  const restarts = new Counter({ name: 'trustplane_worker_restarts_total', help: 'Adapter worker processes restarted after an unexpected exit.', registers: [registry] });
  workersGauge.set({ state: 'configured' }, opts.workers);

  const replay: ClusterReplayServer | undefined = opts.replayStore === undefined ? undefined : serveClusterReplay(opts.replayStore, { attach: false });
  const slots: Slot[] = Array.from({ length: opts.workers }, (_, index) => ({ index, worker: undefined, ready: false, crashes: [], timer: undefined }));
  let url: string | undefined;
  let stopping = false;
  let started = false;
  let exitCode = 0;
  let requestId = 0;
  const waiting = new Map<number, (msg: FromWorker) => void>();
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => (finish = r));
  let startup: { resolve(): void; reject(err: Error): void } | undefined;
  const readyCount = () => slots.filter((s) => s.ready).length;

  function fork(slot: Slot): void {
    slot.timer = undefined;
    // Set before every fork: the settings are process-wide and another primary may share them.
    cluster.setupPrimary({ exec: opts.exec, args: [...(opts.args ?? [])] });
    const worker = cluster.fork({ ...opts.env, [WORKER_SLOT_ENV]: String(slot.index) });
    slot.worker = worker;
    slot.ready = false;
    worker.on('message', (msg: unknown) => {
      if (replay?.handle(worker, msg) === true) return;
      if (!isFromWorker(msg)) return;
      if (msg.tp === 'bundle-req') {
        const pair = opts.bundles?.currentBytes();
        if (pair !== undefined) sendBundle(worker, { tp: 'bundle-pair', trust: pair.trust.toString('base64'), bundle: pair.bundle.toString('base64'), confirmedAtMs: pair.confirmedAtMs });
        return;
      }
      if (msg.tp === 'worker-ready') {
        url ??= msg.url;
        slot.ready = true;
        workersGauge.set({ state: 'ready' }, readyCount());
        if (started) log('info', 'adapter worker ready', { worker: slot.index, pid: worker.process.pid });
        else if (readyCount() === slots.length) startup?.resolve();
        return;
      }
      if (msg.tp === 'worker-failed') {
        // The worker's own reason (e.g. its listen failed): startup fails with it at once. After
        // startup, a worker that fails to come back is handled by its exit below.
        if (!started) startup?.reject(new Error(typeof msg.error === 'string' ? msg.error : 'a worker failed to start'));
        return;
      }
      waiting.get(msg.id)?.(msg);
    });
    // An IPC write to a worker that just died: its exit is handled below.
    worker.on('error', () => undefined);
    worker.once('exit', (code, signal) => {
      if (slot.worker === worker) {
        slot.worker = undefined;
        slot.ready = false;
      }
      workersGauge.set({ state: 'ready' }, readyCount());
      if (stopping) {
        if (slots.every((s) => s.worker === undefined)) void finishStop();
        return;
      }
      if (!started) {
        startup?.reject(new Error(`worker ${slot.index} exited (${signal ?? `code ${code}`}) before it was listening`));
        return;
      }
      const now = Date.now();
      slot.crashes = slot.crashes.filter((t) => now - t < crashLoop.windowMs);
      slot.crashes.push(now);
      if (slot.crashes.length >= crashLoop.crashes) {
        log('error', 'adapter worker is crash-looping; stopping the adapter', { worker: slot.index, crashes: slot.crashes.length, window_ms: crashLoop.windowMs });
        exitCode = 1;
        void stop('crash loop');
        return;
      }
      const delay = Math.min(restartDelay * 2 ** (slot.crashes.length - 1), maxRestartDelay);
      log('error', 'adapter worker exited unexpectedly; restarting it', { worker: slot.index, pid: worker.process.pid, code, signal, restart_in_ms: delay });
      restarts.inc();
      slot.timer = setTimeout(() => fork(slot), delay);
    });
  }

  function sendBundle(worker: Worker, msg: BundleToWorker): void {
    // A worker that just died: its exit is handled by its 'exit' listener.
    if (worker.isConnected()) worker.send(msg, (err: Error | null) => void err);
  }
  function broadcastBundle(msg: BundleToWorker): void {
    for (const s of slots) if (s.worker !== undefined) sendBundle(s.worker, msg);
  }
  const onLoaded = (_e: BundleLoadedEvent) => {
    const pair = opts.bundles?.currentBytes();
    if (pair !== undefined) broadcastBundle({ tp: 'bundle-pair', trust: pair.trust.toString('base64'), bundle: pair.bundle.toString('base64'), confirmedAtMs: pair.confirmedAtMs });
  };
  const onConfirmed = (e: BundleConfirmedEvent) => broadcastBundle({ tp: 'bundle-confirm', contentSha256: e.contentSha256, atMs: e.atMs });
  const onRejected = (e: BundleRejectedEvent) => broadcastBundle({ tp: 'bundle-rejected', reason: e.reason, detail: e.detail, atMs: e.atMs });
  opts.bundles?.on('loaded', onLoaded).on('confirmed', onConfirmed).on('rejected', onRejected);

  /** Ask one worker a question; undefined when it does not answer in time. */
  function ask(worker: Worker, tp: ToWorker['tp'], timeoutMs = 2000): Promise<FromWorker | undefined> {
    const id = ++requestId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, timeoutMs);
      waiting.set(id, (msg) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(msg);
      });
      worker.send({ tp, id } satisfies ToWorker, (err: Error | null) => {
        if (err === null) return;
        clearTimeout(timer);
        waiting.delete(id);
        resolve(undefined);
      });
    });
  }

  async function readiness(): Promise<string[]> {
    if (stopping || draining) return ['shutting down'];
    const problems = await Promise.all(
      slots.map(async (s): Promise<string[]> => {
        if (s.worker === undefined || !s.ready) return [`worker ${s.index} is not running`];
        const answer = await ask(s.worker, 'status-req');
        if (answer?.tp !== 'status') return [`worker ${s.index} did not answer`];
        return answer.problems.map((p) => `worker ${s.index}: ${p}`);
      }),
    );
    return problems.flat();
  }

  async function metricsText(): Promise<{ text: string; contentType: string }> {
    const live = slots.flatMap((s) => (s.worker !== undefined && s.ready ? [s.worker] : []));
    const answers = await Promise.all(live.map((w) => ask(w, 'metrics-req')));
    const perWorker: object[] = [];
    for (const a of answers) {
      if (a?.tp !== 'metrics' || a.metrics === undefined) continue;
      for (const m of a.metrics as { name?: string; aggregator?: Aggregator }[]) {
        const agg = m.name === undefined ? undefined : AGGREGATORS[m.name];
        if (agg !== undefined) m.aggregator = agg;
      }
      perWorker.push(a.metrics);
    }
    const aggregated = AggregatorRegistry.aggregate(perWorker);
    return { text: (await aggregated.metrics()) + (await registry.metrics()), contentType: registry.contentType };
  }

  let adminServer: Server | undefined;
  let adminUrl: string | undefined;

  /** drain(): readiness off while the workers keep serving (a shutdown delay). */
  let draining = false;
  let stopped: Promise<number> | undefined;
  function stop(reason = 'stop'): Promise<number> {
    stopped ??= (async () => {
      stopping = true;
      log('info', 'stopping adapter workers', { reason, workers: slots.filter((s) => s.worker !== undefined).length });
      for (const s of slots) {
        if (s.timer !== undefined) clearTimeout(s.timer);
        s.timer = undefined;
        s.worker?.process.kill('SIGTERM');
      }
      const killer = setTimeout(() => {
        for (const s of slots) s.worker?.process.kill('SIGKILL');
      }, shutdownDeadline + 5000);
      killer.unref();
      if (slots.every((s) => s.worker === undefined)) void finishStop();
      const code = await done;
      clearTimeout(killer);
      return code;
    })();
    return stopped;
  }

  let finishing = false;
  async function finishStop(): Promise<void> {
    if (finishing) return;
    finishing = true;
    opts.bundles?.off('loaded', onLoaded).off('confirmed', onConfirmed).off('rejected', onRejected);
    if (adminServer !== undefined) {
      const s = adminServer;
      await new Promise<void>((r) => s.close(() => r()));
      s.closeAllConnections();
    }
    replay?.close();
    await opts.replayStore?.close?.();
    finish(exitCode);
  }

  try {
    const startTimeout = opts.startTimeoutMs ?? 30_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => startup?.reject(new Error(`the workers did not start listening within ${startTimeout} ms`)), startTimeout);
      startup = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      for (const s of slots) fork(s);
    });
    started = true;
    startup = undefined;
    if (opts.admin !== undefined) {
      ({ server: adminServer, url: adminUrl } = await startAdminServer({ listen: opts.admin, readiness, metrics: metricsText, readyDetails: () => ({ workers: slots.length }) }));
    }
  } catch (err) {
    exitCode = 1;
    await stop('startup failed');
    throw err;
  }

  return {
    url: url ?? '',
    adminUrl,
    workerPids: () => slots.flatMap((s) => (s.worker?.process.pid !== undefined ? [s.worker.process.pid] : [])),
    drain: () => {
      draining = true;
    },
    reload: () => {
      for (const s of slots) s.worker?.process.kill('SIGHUP');
    },
    stop,
    done,
  };
}

/**
 * In a worker whose adapter could not start (e.g. the port is in use): give the primary the
 * reason, so that its startup fails at once with that one line, and leave the cluster.
 */
export function reportWorkerStartFailure(error: string): Promise<void> {
  return new Promise((resolve) => {
    const leave = () => {
      if (process.connected) cluster.worker?.disconnect();
      resolve();
    };
    if (!process.connected || process.send === undefined) return leave();
    process.send({ tp: 'worker-failed', error } satisfies FromWorker, undefined, undefined, leave);
  });
}

export interface ClusterWorkerOptions {
  /** The worker's adapter URL (reported to the primary). */
  url: string;
  metrics: AdapterMetrics;
  policy: PolicyProvider;
  replayStore: ReplayStore;
  /** Extra readiness condition of this worker (its audit sink blocked). */
  extraReadiness?: () => string | undefined;
}

export interface AttachedClusterWorker {
  /** Stop answering the primary and disconnect from it (after the adapter has closed). */
  close(): void;
}

/** In a worker: report ready, answer the primary's readiness and metrics questions. */
export function attachClusterWorker(opts: ClusterWorkerOptions): AttachedClusterWorker {
  const readiness = verifierReadiness(opts.policy, opts.replayStore, opts.extraReadiness);
  const send = (msg: FromWorker) => {
    if (process.connected) process.send?.(msg, undefined, undefined, () => undefined);
  };
  const onMessage = (msg: unknown) => {
    const m = msg as Partial<ToWorker> | null;
    if (typeof m !== 'object' || m === null || typeof m.id !== 'number') return;
    const id = m.id;
    if (m.tp === 'status-req') {
      void readiness().then((problems) => send({ tp: 'status', id, problems }));
    } else if (m.tp === 'metrics-req') {
      opts.metrics.registry.getMetricsAsJSON().then(
        (metrics) => send({ tp: 'metrics', id, metrics }),
        (err: unknown) => send({ tp: 'metrics', id, error: err instanceof Error ? err.message : String(err) }),
      );
    }
  };
  process.on('message', onMessage);
  send({ tp: 'worker-ready', url: opts.url });
  return {
    close() {
      process.removeListener('message', onMessage);
      // A planned exit (exitedAfterDisconnect on the primary's side), and nothing keeps the
      // event loop alive afterwards.
      if (process.connected) cluster.worker?.disconnect();
    },
  };
}

/**
 * In a worker, before it listens: ask the primary for its current bundle pair and serve what it
 * pushes from then on (pairs, confirmations, refusals) through `follower`. Resolves with a
 * function that stops following once a pair is served; rejects when the primary sends none
 * within `timeoutMs` or the pair it sends does not load here.
 */
export function followClusterBundles(follower: BundleFollower, timeoutMs = 30_000): Promise<() => void> {
  return new Promise((resolve, reject) => {
    if (!process.connected || process.send === undefined) {
      reject(new Error('not a cluster worker: there is no primary to take the bundle pair from'));
      return;
    }
    let firstRejection: string | undefined;
    const onStartReject = (e: BundleRejectedEvent) => (firstRejection ??= `${e.reason}: ${e.detail}`);
    follower.on('rejected', onStartReject);
    let settled = false;
    const stop = () => process.removeListener('message', onMessage);
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      follower.off('rejected', onStartReject);
      if (err === undefined) resolve(stop);
      else {
        stop();
        reject(err);
      }
    };
    const onMessage = (raw: unknown) => {
      const msg = raw as Partial<BundleToWorker> | null;
      if (typeof msg !== 'object' || msg === null) return;
      if (msg.tp === 'bundle-pair' && typeof msg.trust === 'string' && typeof msg.bundle === 'string' && typeof msg.confirmedAtMs === 'number') {
        follower.offer(Buffer.from(msg.trust, 'base64'), Buffer.from(msg.bundle, 'base64'), msg.confirmedAtMs);
        if (!settled) settle(follower.current() === undefined ? new Error(`the primary's bundle pair does not load in the worker: ${firstRejection ?? 'unknown error'}`) : undefined);
      } else if (msg.tp === 'bundle-confirm' && typeof msg.contentSha256 === 'string' && typeof msg.atMs === 'number') {
        follower.confirm({ contentSha256: msg.contentSha256, atMs: msg.atMs });
      } else if (msg.tp === 'bundle-rejected' && typeof msg.reason === 'string' && typeof msg.detail === 'string' && typeof msg.atMs === 'number') {
        follower.relayRejected({ reason: msg.reason, detail: msg.detail, atMs: msg.atMs });
      }
    };
    const timer = setTimeout(() => settle(new Error(`no bundle pair from the primary within ${timeoutMs} ms`)), timeoutMs);
    process.on('message', onMessage);
    process.send({ tp: 'bundle-req' } satisfies FromWorker, undefined, undefined, (err: Error | null) => {
      if (err !== null) settle(new Error(`cannot ask the primary for the bundle pair: ${err.message}`));
    });
  });
}
