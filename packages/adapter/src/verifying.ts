/**
 * What every verifying process of this package builds the same way — the adapter and the
 * forward-auth verifier: a monotonic clock, the metrics (with the bundle version and age gauges
 * read from the policy), the core Verifier with the configured limits, and the admin server.
 */
import type { Server } from 'node:http';
import { Verifier, MonotonicClock, systemClock, type Clock, type PolicyProvider, type ReplayStore } from '@trustplane/core';
import { createMetrics, type AdapterMetrics } from './metrics.js';
import type { AuditSink } from './audit-sink.js';
import { startAdminServer, verifierReadiness } from './admin.js';

export interface VerifyingOptions {
  policy: PolicyProvider;
  replayStore: ReplayStore;
  routeMode?: 'request' | 'route-id';
  routeId?: string | undefined;
  freshnessWindowSeconds?: number;
  skewSeconds?: number;
  maxLifetimeSeconds?: number;
  clock?: Clock;
  metrics?: AdapterMetrics;
  /** `/healthz`, `/readyz`, `/metrics` on this address; `undefined` disables them. */
  admin?: { host: string; port: number } | undefined;
  /** The audit sink: its dropped events are counted in the metrics, its blocking in readiness. */
  audit?: AuditSink;
  /** Extra readiness condition (e.g. JWKS issuers fetched). */
  extraReadiness?: (() => string | undefined) | undefined;
}

export function createVerifying(opts: VerifyingOptions): { clock: MonotonicClock; metrics: AdapterMetrics; verifier: Verifier } {
  const clock = new MonotonicClock(opts.clock ?? systemClock);
  const metrics =
    opts.metrics ??
    createMetrics({
      bundleVersion: () => opts.policy.current()?.policy.policyVersion,
      bundleAgeSeconds: () => {
        const s = opts.policy.current();
        return s === undefined ? undefined : (clock.now() - s.confirmedAtMs) / 1000;
      },
      auditDropped: () => opts.audit?.dropped?.() ?? 0,
    });
  const verifier = new Verifier({
    policy: opts.policy,
    replayStore: opts.replayStore,
    clock,
    routeMode: opts.routeMode ?? 'request',
    ...(opts.routeId !== undefined ? { routeId: opts.routeId } : {}),
    ...(opts.freshnessWindowSeconds !== undefined ? { freshnessWindowSeconds: opts.freshnessWindowSeconds } : {}),
    ...(opts.skewSeconds !== undefined ? { skewSeconds: opts.skewSeconds } : {}),
    ...(opts.maxLifetimeSeconds !== undefined ? { maxLifetimeSeconds: opts.maxLifetimeSeconds } : {}),
  });
  return { clock, metrics, verifier };
}

/** The admin server of one verifying process, when `opts.admin` is set. */
export async function startVerifyingAdmin(opts: VerifyingOptions, metrics: AdapterMetrics): Promise<{ server: Server; url: string } | undefined> {
  if (opts.admin === undefined) return undefined;
  return startAdminServer({
    listen: opts.admin,
    readiness: verifierReadiness(opts.policy, opts.replayStore, () => opts.audit?.problem?.() ?? opts.extraReadiness?.()),
    metrics: async () => ({ contentType: metrics.registry.contentType, text: await metrics.registry.metrics() }),
  });
}
