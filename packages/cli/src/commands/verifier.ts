/**
 * `trustplane verifier` (also `trustplane-verifier`): the forward-auth decision endpoint for
 * gateways that authorize with a sub-request — NGINX `auth_request`, Envoy HTTP `ext_authz`,
 * Traefik `forwardAuth` (docs/gateways.md). 200 with the identity headers on allow, the mapped
 * status with `{"allowed":false,"reason":…}` on deny. The options shared with the adapter (bundles,
 * replay store, clock limits, audit, config file, environment) live in runtime.ts.
 */
import { Option, type Command } from 'commander';
import { failure, type CliIo } from '../output.js';
import { VERIFIER_CONFIG_KEYS, addVerifierOptions, applyConfigFile, startVerifierRuntime, verifierSettings, type VerifierFlags } from './runtime.js';

interface ForwardAuthFlags extends VerifierFlags {
  trustForwardedHeaders?: boolean;
  envoyPathPrefix: string;
}

const CONFIG_KEYS: Readonly<Record<string, string>> = { ...VERIFIER_CONFIG_KEYS, trust_forwarded_headers: 'trustForwardedHeaders', envoy_path_prefix: 'envoyPathPrefix' };

export function registerVerifier(program: Command, io: CliIo): void {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_${name}`);
  const cmd = program
    .command('verifier')
    .description('Run the forward-auth verifier: the allow/deny decision for NGINX auth_request, Envoy ext_authz and Traefik forwardAuth');
  addVerifierOptions(cmd, { listen: '127.0.0.1:8081', adminListen: '127.0.0.1:9091' }, (c) => {
    c.addOption(
      env(
        new Option('--trust-forwarded-headers', 'take the original method/URI from X-Original-* (NGINX) and X-Forwarded-* (Traefik); only when the gateway alone can reach this verifier'),
        'TRUST_FORWARDED_HEADERS',
      ),
    );
    c.addOption(env(new Option('--envoy-path-prefix <prefix>', 'Envoy ext_authz path_prefix ("" disables the Envoy convention)').default('/ext_authz'), 'ENVOY_PATH_PREFIX'));
  });
  cmd.action(async (opts: ForwardAuthFlags) => {
    applyConfigFile(cmd, opts.config, CONFIG_KEYS);
    const o = cmd.opts<ForwardAuthFlags>();
    const s = verifierSettings(o);
    const rt = await startVerifierRuntime(s);
    const { startForwardAuthVerifier, capConnections, log } = await import('@trustplane/adapter');
    const v = await startForwardAuthVerifier({
      listen: s.listen,
      admin: s.admin,
      policy: rt.policy,
      ...(rt.extraReadiness !== undefined ? { extraReadiness: rt.extraReadiness } : {}),
      replayStore: rt.replayStore,
      audit: rt.audit,
      trustForwardedHeaders: o.trustForwardedHeaders === true,
      envoyPathPrefix: o.envoyPathPrefix,
      routeMode: s.routeMode,
      routeId: s.routeId,
      freshnessWindowSeconds: s.freshnessWindowSeconds,
      skewSeconds: s.skewSeconds,
      maxLifetimeSeconds: s.maxLifetimeSeconds,
    }).catch((err: unknown) => {
      rt.abort();
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    capConnections(v.server, s.maxConnections, 'verifier');
    rt.observeReloads(v.metrics, 'verifier');
    log('info', 'forward-auth verifier listening', { url: v.url, admin: v.adminUrl, replay: s.replay === 'memory' ? 'memory' : 'redis', trust_forwarded_headers: o.trustForwardedHeaders === true, policy_version: rt.watcher.current()?.policy.policyVersion });
    // Signal handlers before the line a supervisor waits for (see adapter.ts).
    const stopped = rt.untilStopped(() => v.close(), s.shutdownDelaySeconds * 1000);
    io.stderr(`trustplane verifier: listening on ${v.url} (admin ${v.adminUrl ?? 'off'}; conventions: ${[o.trustForwardedHeaders === true ? 'nginx, traefik' : '', o.envoyPathPrefix !== '' ? `envoy ${o.envoyPathPrefix}` : ''].filter((x) => x !== '').join(', ') || 'none'})\n`);
    await stopped;
  });
}
