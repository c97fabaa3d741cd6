/**
 * The SPIFFE options of `trustplane broker serve`: a Workload API X.509-SVID source that lets the
 * broker grant `attested_workload` while the workload's SVID validates (docs/spiffe.md).
 */
import { Option, type Command } from 'commander';
import type { SignerSource, SpiffeIdSelector, WorkloadApiX509Source } from '@trustplane/broker';
import { usageError, type CliIo } from '../output.js';

export interface SpiffeCliOptions {
  spiffeSocket?: string;
  spiffeTrustDomain?: string;
  spiffeId?: string;
  spiffeIdPrefix?: string;
  spiffeReadyTimeoutMs: string;
}

export function addSpiffeOptions(cmd: Command): Command {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_BROKER_${name}`);
  return cmd
    .addOption(env(new Option('--spiffe-socket <path>', 'enable the SPIFFE source: the SPIFFE Workload API socket (a path or unix:///path, e.g. "$SPIFFE_ENDPOINT_SOCKET")'), 'SPIFFE_SOCKET'))
    .addOption(env(new Option('--spiffe-trust-domain <domain>', 'trust domain the SVID must belong to (default: --trust-domain)'), 'SPIFFE_TRUST_DOMAIN'))
    .addOption(env(new Option('--spiffe-id <id>', 'accept only this SPIFFE ID').conflicts('spiffeIdPrefix'), 'SPIFFE_ID'))
    .addOption(env(new Option('--spiffe-id-prefix <prefix>', 'accept only SPIFFE IDs under this path prefix (whole segments)').conflicts('spiffeId'), 'SPIFFE_ID_PREFIX'))
    .addOption(env(new Option('--spiffe-ready-timeout-ms <ms>', 'how long to wait at startup for a first valid SVID (the broker starts either way)').default('10000'), 'SPIFFE_READY_TIMEOUT_MS'));
}

/** Start the SVID source when --spiffe-socket is given; bad settings are usage errors. */
export async function spiffeSourceFromOptions(o: SpiffeCliOptions, trustDomain: string, io: CliIo): Promise<{ source: SignerSource; close: () => Promise<void> } | undefined> {
  if (o.spiffeSocket === undefined) {
    if (o.spiffeId !== undefined || o.spiffeIdPrefix !== undefined || o.spiffeTrustDomain !== undefined) throw usageError('--spiffe-id, --spiffe-id-prefix and --spiffe-trust-domain need --spiffe-socket');
    return undefined;
  }
  const timeout = Number(o.spiffeReadyTimeoutMs);
  if (!/^\d+$/.test(o.spiffeReadyTimeoutMs) || !Number.isSafeInteger(timeout)) throw usageError(`--spiffe-ready-timeout-ms must be a non-negative integer, got ${JSON.stringify(o.spiffeReadyTimeoutMs)}`);
  const { WorkloadApiX509Source, parseWorkloadApiSocket, spiffeSource } = await import('@trustplane/broker');
  const { log } = await import('@trustplane/adapter');
  const selector: SpiffeIdSelector | undefined = o.spiffeId !== undefined ? { exact: o.spiffeId } : o.spiffeIdPrefix !== undefined ? { prefix: o.spiffeIdPrefix } : undefined;
  let source: WorkloadApiX509Source;
  try {
    source = new WorkloadApiX509Source({
      socketPath: parseWorkloadApiSocket(o.spiffeSocket),
      trustDomain: o.spiffeTrustDomain ?? trustDomain,
      ...(selector !== undefined ? { selector } : {}),
      onEvent: (e) => log(e.type === 'svid_updated' ? 'info' : 'warn', `spiffe: ${e.type.replace('_', ' ')}`, { detail: e.detail, ...(e.identity !== undefined ? { spiffe_id: e.identity.spiffeId, not_after: new Date(e.identity.notAfterMs).toISOString() } : {}) }),
    });
  } catch (err) {
    throw usageError(`--spiffe-*: ${err instanceof Error ? err.message : String(err)}`);
  }
  const first = await source.ready(timeout);
  if (first.ok) io.stderr(`trustplane broker: SPIFFE SVID ${first.identity.spiffeId} verified (valid until ${new Date(first.identity.notAfterMs).toISOString()})\n`);
  else io.stderr(`trustplane broker: no valid SPIFFE SVID yet (${first.code}: ${first.detail}); attested_workload requests are refused until one arrives\n`);
  return { source: spiffeSource(source), close: () => source.close() };
}
