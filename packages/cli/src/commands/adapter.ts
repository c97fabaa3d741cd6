/**
 * `trustplane adapter` (also `trustplane-adapter`): the verifying reverse proxy in front of an
 * API. Every flag can also come from the environment (TRUSTPLANE_<FLAG>, shown in --help) and
 * from a JSON config file (--config); precedence: flag > environment > config file > default.
 * Invalid configuration stops startup with one clear line (exit 2). The options shared with
 * `trustplane verifier` live in runtime.ts.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import { usageError, failure, type CliIo } from '../output.js';
import { VERIFIER_CONFIG_KEYS, addVerifierOptions, applyConfigFile, onStopSignals, positiveInt, startVerifierRuntime, verifierSettings, type VerifierFlags } from './runtime.js';

export { parseHostPort, parseSigningKeys } from './runtime.js';

interface AdapterFlags extends VerifierFlags {
  upstream?: string;
  maxBodyBytes: string;
  workers: string;
}

const CONFIG_KEYS: Readonly<Record<string, string>> = { ...VERIFIER_CONFIG_KEYS, upstream: 'upstream', max_body_bytes: 'maxBodyBytes', workers: 'workers' };

/** `--workers`: a positive integer, or `auto` (one per available core). */
function parseWorkers(value: string): number {
  return value === 'auto' ? availableParallelism() : positiveInt(value, '--workers');
}

/** Every resolved option as its TRUSTPLANE_* variable, so workers see exactly the primary's settings. */
function workerEnv(cmd: Command): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const opt of cmd.options) {
    if (opt.envVar === undefined) continue;
    const v = cmd.getOptionValue(opt.attributeName()) as string | string[] | boolean | undefined;
    out[opt.envVar] = v === undefined || v === false ? undefined : v === true ? '1' : Array.isArray(v) ? v.join(',') : v;
  }
  out['TRUSTPLANE_CONFIG'] = undefined; // already applied above
  return out;
}


export function registerAdapter(program: Command, io: CliIo): void {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_${name}`);
  const cmd = program
    .command('adapter')
    .description('Run the verifying reverse proxy in front of an API (every request verified locally before it reaches the upstream)');
  addVerifierOptions(cmd, { listen: '127.0.0.1:8080', adminListen: '127.0.0.1:9090' }, (c) => {
    c.addOption(env(new Option('--upstream <url>', 'the protected API, e.g. http://127.0.0.1:3000'), 'UPSTREAM'));
    c.addOption(env(new Option('--max-body-bytes <n>', 'larger bodies are refused with 413').default(String(1024 * 1024)), 'MAX_BODY_BYTES'));
    c.addOption(env(new Option('--workers <n|auto>', 'worker processes (auto: one per core); the memory replay store is then kept by the primary').default('1'), 'WORKERS'));
  });
  cmd.action(async (opts: AdapterFlags) => {
    // Loaded only when the adapter runs (undici, ioredis, prom-client): other commands start fast.
    const { startAdapter, log, startClusterPrimary, attachClusterWorker, reportWorkerStartFailure, isAdapterWorker, ClusterReplayStore } = await import('@trustplane/adapter');
    applyConfigFile(cmd, opts.config, CONFIG_KEYS);
    const o = cmd.opts<AdapterFlags>();
    if (o.upstream === undefined) throw usageError('--upstream <url> is required (or TRUSTPLANE_UPSTREAM)');
    try {
      const u = new URL(o.upstream);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw usageError(`--upstream must be an http:// or https:// URL, got ${JSON.stringify(o.upstream)}`);
    }
    const s = verifierSettings(o);
    const maxBody = positiveInt(o.maxBodyBytes, '--max-body-bytes');
    const workers = parseWorkers(o.workers);
    const role = workers === 1 ? 'single' : isAdapterWorker() ? 'worker' : 'primary';
    // The primary checks Redis persistence once; its workers do not repeat it.
    const rt = await startVerifierRuntime(s, role, { checkReplayPersistence: role !== 'worker' }).catch(async (err: unknown) => {
      if (role !== 'worker') throw err;
      // The primary reports it, once (its startup fails with this line), and stops the others.
      await reportWorkerStartFailure(err instanceof Error ? err.message : String(err));
      return undefined;
    });
    if (rt === undefined) {
      process.exitCode = 1;
      return;
    }
    if (role === 'primary') {
      // Configuration is validated here, once; the workers verify requests. The primary keeps
      // watching the bundle files (and the high-water mark): the workers serve its pairs.
      void rt.audit.close();
      if (s.replay !== 'memory') void rt.replayStore.close?.(); // each worker opens its own Redis connection
      const primary = await startClusterPrimary({
        workers,
        exec: fileURLToPath(new URL('../../../bin/trustplane.js', import.meta.url)),
        args: ['adapter'],
        env: workerEnv(cmd),
        admin: s.admin,
        replayStore: s.replay === 'memory' ? rt.replayStore : undefined,
        bundles: rt.fileWatcher,
      }).catch((err: unknown) => {
        rt.watcher.close();
        throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
      });
      log('info', 'adapter listening', { url: primary.url, admin: primary.adminUrl, upstream: o.upstream, replay: s.replay === 'memory' ? 'memory (primary)' : 'redis', workers });
      // With --shutdown-delay the workers are stopped that much after readiness goes off (the
      // workers themselves get no delay).
      const removeStopSignals = onStopSignals(
        s.shutdownDelaySeconds * 1000,
        log,
        () => primary.drain(),
        (signal) => void primary.stop(signal),
      );
      // The primary reads the files; what it accepts reaches every worker.
      const onHup = () => {
        log('info', 'SIGHUP: reloading bundles');
        rt.watcher.reload();
      };
      process.on('SIGHUP', onHup);
      io.stderr(`trustplane adapter: listening on ${primary.url} → ${o.upstream} (admin ${primary.adminUrl ?? 'off'}, ${workers} workers)\n`);
      const code = await primary.done;
      rt.watcher.close();
      removeStopSignals();
      process.removeListener('SIGHUP', onHup);
      if (code !== 0) throw failure('stopped: an adapter worker kept crashing');
      return;
    }
    // A worker consumes jtis in the primary's store (memory) or in Redis, shared either way.
    const replayStore = role === 'worker' && s.replay === 'memory' ? new ClusterReplayStore() : rt.replayStore;
    const adapter = await startAdapter({
      listen: s.listen,
      admin: role === 'worker' ? undefined : s.admin,
      upstream: o.upstream,
      policy: rt.policy,
      ...(rt.extraReadiness !== undefined ? { extraReadiness: rt.extraReadiness } : {}),
      replayStore,
      audit: rt.audit,
      routeMode: s.routeMode,
      routeId: s.routeId,
      freshnessWindowSeconds: s.freshnessWindowSeconds,
      skewSeconds: s.skewSeconds,
      maxLifetimeSeconds: s.maxLifetimeSeconds,
      maxBodyBytes: maxBody,
      maxConnections: s.maxConnections,
    }).catch(async (err: unknown) => {
      rt.abort();
      const reason = err instanceof Error ? err.message : String(err);
      if (role !== 'worker') throw failure(`cannot start: ${reason}`);
      // The primary reports it, once, and stops the other workers.
      await reportWorkerStartFailure(reason);
      return undefined;
    });
    if (adapter === undefined) {
      process.exitCode = 1;
      return;
    }
    rt.observeReloads(adapter.metrics, 'adapter');
    const snap = rt.watcher.current();
    log('info', 'adapter listening', { url: adapter.url, admin: adapter.adminUrl, upstream: o.upstream, replay: s.replay === 'memory' ? 'memory' : 'redis', policy_version: snap?.policy.policyVersion });
    if (role === 'worker') {
      const attached = attachClusterWorker({ url: adapter.url, metrics: adapter.metrics, policy: rt.policy, replayStore, extraReadiness: () => rt.audit.problem?.() });
      await rt.untilStopped(() => adapter.close(10_000).then(() => attached.close()));
      return;
    }
    // Signal handlers first, then the line that tells a supervisor (or a test) we are up: a
    // SIGTERM sent the moment it reads that line must find them installed.
    const stopped = rt.untilStopped(() => adapter.close(10_000), s.shutdownDelaySeconds * 1000);
    io.stderr(`trustplane adapter: listening on ${adapter.url} → ${o.upstream} (admin ${adapter.adminUrl ?? 'off'})\n`);
    await stopped;
  });
}
