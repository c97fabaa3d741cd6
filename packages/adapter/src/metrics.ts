/**
 * Prometheus metrics (prom-client): decisions by outcome, reason and route; verification and
 * end-to-end latency; bundle version and age; bundle reloads; replay-store and upstream errors;
 * audit events dropped by a blocked audit sink.
 * One registry per adapter, so several adapters (tests) never share counters.
 */
import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client';

export interface AdapterMetrics {
  readonly registry: Registry;
  readonly decisions: Counter<'outcome' | 'reason' | 'route'>;
  readonly verifySeconds: Histogram<'outcome'>;
  readonly requestSeconds: Histogram<'outcome'>;
  readonly replayStoreErrors: Counter;
  readonly upstreamErrors: Counter<'kind'>;
  readonly bundleReloads: Counter<'result'>;
  readonly bundleVersion: Gauge;
  readonly bundleAgeSeconds: Gauge;
  readonly auditDropped: Counter;
}

export function createMetrics(opts: { defaultMetrics?: boolean; bundleAgeSeconds?: () => number | undefined; bundleVersion?: () => number | undefined; auditDropped?: () => number } = {}): AdapterMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'trustplane_' });
  const buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
  return {
    registry,
    decisions: new Counter({ name: 'trustplane_decisions_total', help: 'Verification decisions by outcome, reason code and route.', labelNames: ['outcome', 'reason', 'route'], registers: [registry] }),
    verifySeconds: new Histogram({ name: 'trustplane_verify_duration_seconds', help: 'Time to verify a request, from its body read to its decision (including its wait for the event-loop turn\'s verification batch).', labelNames: ['outcome'], buckets, registers: [registry] }),
    requestSeconds: new Histogram({ name: 'trustplane_request_duration_seconds', help: 'End-to-end time in the adapter, including the upstream.', labelNames: ['outcome'], buckets: [...buckets, 2.5, 5, 10, 30], registers: [registry] }),
    replayStoreErrors: new Counter({ name: 'trustplane_replay_store_errors_total', help: 'Replay-store failures (each one denied a request with 503).', registers: [registry] }),
    upstreamErrors: new Counter({ name: 'trustplane_upstream_errors_total', help: 'Upstream failures by kind (unavailable, timeout).', labelNames: ['kind'], registers: [registry] }),
    bundleReloads: new Counter({ name: 'trustplane_bundle_reloads_total', help: 'Bundle reload attempts by result (loaded, rejected).', labelNames: ['result'], registers: [registry] }),
    bundleVersion: new Gauge({
      name: 'trustplane_bundle_policy_version',
      help: 'policy_version of the policy bundle in force (-1 when none).',
      registers: [registry],
      collect() {
        this.set(opts.bundleVersion?.() ?? -1);
      },
    }),
    bundleAgeSeconds: new Gauge({
      name: 'trustplane_bundle_age_seconds',
      help: 'Seconds since the bundle files were last confirmed current (-1 when none).',
      registers: [registry],
      collect() {
        this.set(opts.bundleAgeSeconds?.() ?? -1);
      },
    }),
    auditDropped: new Counter({
      name: 'trustplane_audit_events_dropped_total',
      help: 'Audit events not written: the audit sink did not take lines (a FIFO or pipe not read, a full disk) past its buffer.',
      registers: [registry],
      collect() {
        // The sink keeps the count; the counter mirrors it (it only grows).
        const n = opts.auditDropped?.() ?? 0;
        this.reset();
        if (n > 0) this.inc(n);
      },
    }),
  };
}
