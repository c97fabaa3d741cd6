/**
 * `trustplane adapter` (also `trustplane-adapter`): the verifying reverse proxy in front of an
 * API. Every flag can also come from the environment (TRUSTPLANE_<FLAG>, shown in --help) and
 * from a JSON config file (--config); precedence: flag > environment > config file > default.
 * Invalid configuration stops startup with one clear line (exit 2). The options shared with
 * `trustplane verifier` live in runtime.ts.
 */
import { Option, type Command } from 'commander';
import { startAdapter, log } from '@trustplane/adapter';
import { usageError, failure, type CliIo } from '../output.js';
import { VERIFIER_CONFIG_KEYS, addVerifierOptions, applyConfigFile, positiveInt, startVerifierRuntime, verifierSettings, type VerifierFlags } from './runtime.js';

export { parseHostPort, parseSigningKeys } from './runtime.js';

interface AdapterFlags extends VerifierFlags {
  upstream?: string;
  maxBodyBytes: string;
}

const CONFIG_KEYS: Readonly<Record<string, string>> = { ...VERIFIER_CONFIG_KEYS, upstream: 'upstream', max_body_bytes: 'maxBodyBytes' };

export function registerAdapter(program: Command, io: CliIo): void {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_${name}`);
  const cmd = program
    .command('adapter')
    .description('Run the verifying reverse proxy in front of an API (every request verified locally before it reaches the upstream)');
  addVerifierOptions(cmd, { listen: '127.0.0.1:8080', adminListen: '127.0.0.1:9090' }, (c) => {
    c.addOption(env(new Option('--upstream <url>', 'the protected API, e.g. http://127.0.0.1:3000'), 'UPSTREAM'));
    c.addOption(env(new Option('--max-body-bytes <n>', 'larger bodies are refused with 413').default(String(1024 * 1024)), 'MAX_BODY_BYTES'));
  });
  cmd.action(async (opts: AdapterFlags) => {
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
    const rt = await startVerifierRuntime(s);
    const adapter = await startAdapter({
      listen: s.listen,
      admin: s.admin,
      upstream: o.upstream,
      policy: rt.watcher,
      replayStore: rt.replayStore,
      audit: rt.audit,
      routeMode: s.routeMode,
      routeId: s.routeId,
      freshnessWindowSeconds: s.freshnessWindowSeconds,
      skewSeconds: s.skewSeconds,
      maxLifetimeSeconds: s.maxLifetimeSeconds,
      maxBodyBytes: maxBody,
    }).catch((err: unknown) => {
      rt.abort();
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    rt.observeReloads(adapter.metrics, 'adapter');
    const snap = rt.watcher.current();
    log('info', 'adapter listening', { url: adapter.url, admin: adapter.adminUrl, upstream: o.upstream, replay: s.replay === 'memory' ? 'memory' : 'redis', policy_version: snap?.policy.policyVersion });
    io.stderr(`trustplane adapter: listening on ${adapter.url} → ${o.upstream} (admin ${adapter.adminUrl ?? 'off'})\n`);
    await rt.untilStopped(() => adapter.close(10_000));
  });
}
