/**
 * The broker's SPIFFE X.509-SVID source: strict X509-SVID validation and a client of the SPIFFE
 * Workload API. The broker issues `attested_workload` passports only while
 * `WorkloadApiX509Source.status()` is ok. See docs/spiffe.md.
 */
export type { SpiffeIdSelector } from './spiffe-id.js';
export { parseSpiffeId } from './spiffe-id.js';
export type { SvidIdentity, SvidFailureCode, SvidStatus, ValidateX509SvidInput } from './svid.js';
export { validateX509Svid, MAX_CHAIN_CERTS, MAX_BUNDLE_CERTS } from './svid.js';
export { splitConcatenatedDer, MAX_CERT_DATA_BYTES } from './der.js';
export type { WorkloadApiX509SourceOptions, WorkloadApiX509SourceEvent } from './workload-api.js';
export { WorkloadApiX509Source, parseWorkloadApiSocket, WORKLOAD_API_PROTO_PATH, WORKLOAD_API_HEADER } from './workload-api.js';
export * from './dev-agent.js';
