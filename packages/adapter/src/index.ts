/** @trustplane/adapter — the verifying reverse proxy and its parts. */
export { startAdapter, type AdapterOptions, type RunningAdapter } from './adapter.js';
export { createProxyHandler, sendDenial, type ProxyOptions, type ProxyHandler } from './proxy.js';
export { RedisReplayStore, createRedisClient, type RedisReplayStoreOptions, type RedisPersistence } from './replay-redis.js';
export { createMetrics, type AdapterMetrics } from './metrics.js';
export { createAuditSink, MemoryAuditSink, log, setLogLevel, type AuditSink, type LogLevel } from './audit-sink.js';
export { upstreamRequestHeaders, downstreamResponseHeaders, inboundHeaders, requestIdOf, IDENTITY_HEADERS, HOP_BY_HOP, type InboundHeaders } from './headers.js';
export { readBody, hasNoBody, type BodyResult } from './body.js';
export { startForwardAuthVerifier, originalRequest, type ForwardAuthOptions, type RunningForwardAuthVerifier, type ForwardAuthConvention } from './forward-auth.js';
export { ClusterReplayStore, serveClusterReplay, type ClusterReplayStoreOptions, type ClusterReplayServer, type ServeClusterReplayOptions, type ReplayChannel, type ReplayPeer } from './replay-cluster.js';
export { startClusterPrimary, attachClusterWorker, followClusterBundles, reportWorkerStartFailure, isAdapterWorker, WORKER_SLOT_ENV, type ClusterPrimaryOptions, type RunningClusterPrimary, type ClusterWorkerOptions, type AttachedClusterWorker } from './cluster.js';
export { JwksTrustSource, jwksUriProblem, type JwksTrustSourceOptions, type JwksTrustSourceEvent, type JwksIssuerStatus, type BundlePairSource } from './jwks-source.js';
export { DEFAULT_MAX_CONNECTIONS, capConnections, serverTimeoutOptions, destroyWithin, endAndDestroy, type ClientTimeouts } from './connections.js';
