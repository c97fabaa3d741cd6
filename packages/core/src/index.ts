/**
 * @trustplane/core — the TrustPlane Auth contract and verifier, usable on its own (SPEC §8):
 * only node:crypto, with libsodium (optional `sodium-native`) as the faster Ed25519 backend.
 */
export { pyTrim, asciiLower, asciiUpper } from './text.js';
export { REASONS, BROKER_ONLY_REASONS, BROKER_PASSPORT_ISSUED, isReasonCode, statusOf, type ReasonCode, type ReasonInfo } from './reasons.js';
export { TrustPlaneError, FormatError } from './errors.js';
export { decodeBase64url, encodeBase64url, sha256Hex, isSha256Hex, decodeUtf8Strict, EMPTY_SHA256 } from './encoding.js';
export { parseJsonStrict, parseJsonBytes, isJsonObject, type JsonValue, type JsonObject } from './json.js';
export {
  getEd25519Backend,
  sodiumAvailable,
  privateKeyFromSeed,
  generatePrivateKey,
  Ed25519PrivateKey,
  Ed25519PublicKey,
  type Ed25519Backend,
  type BackendName,
} from './ed25519/backend.js';
export { publicKeyProblem, isAcceptableSignature } from './ed25519/strict.js';
export { parsePrivateKey, readPrivateKeyFile, formatPrivateKey, parsePublicKey, publicKeyBase64url, fingerprint } from './keys.js';
export { SIGNER_CLASSES, SIGNER_CLASS_ORDER, isSignerClass, meetsMinimum, signerRank, type SignerClass } from './signer-classes.js';
export {
  buildTranscript,
  normalizeQuery,
  canonicalAllowList,
  bodySha256,
  TRANSCRIPT_VERSION,
  QUERY_NORMALIZATION,
  TIME_BUCKET_SECONDS,
  type TranscriptInput,
  type Transcript,
  type HeaderEntry,
  type TranscriptHeaders,
} from './transcript.js';
export {
  issuePassport,
  parsePassport,
  validatePassportClaims,
  verifyPassportSignature,
  decodePassportUnverified,
  MAX_PASSPORT_CHARS,
  DEFAULT_SKEW_SECONDS,
  DEFAULT_MAX_LIFETIME_SECONDS,
  DEFAULT_PASSPORT_TTL_SECONDS,
  type IssuePassportOptions,
  type IssuedPassport,
  type ParsedPassport,
  type PassportClaims,
  type PassportHeader,
  type PassportCnf,
  type PassportProvenance,
} from './passport.js';
export {
  compilePolicy,
  resolveRoute,
  DEFAULT_SIGNED_HEADERS,
  TRUST_MATERIAL_VERSION,
  POLICY_BUNDLE_VERSION,
  SOURCE_TYPES,
  type TrustMaterial,
  type TrustIssuer,
  type TrustKey,
  type PolicyBundle,
  type RoutePolicy,
  type SourceRule,
  type ApiPolicy,
  type Revocation,
  type CompiledPolicy,
  type CompiledRoute,
  type CompiledKey,
  type SourceType,
} from './policy.js';
export { MemoryReplayStore, ReplayStoreError, replayKey, REPLAY_KEY_LENGTH, REPLAY_RECORD_KEY_LENGTH, type ReplayStore, type ConsumeResult, type MemoryReplayStoreOptions } from './replay.js';
export { MonotonicClock, ManualClock, systemClock, type Clock } from './clock.js';
export { buildAuditEvent, auditEventForDecision, AUDIT_EVENT_VERSION, type AuditEvent, type AuditComponent, type AuditFields } from './audit.js';
export {
  Verifier,
  StaticPolicyProvider,
  VerifiedHead,
  SIGNED_HEADERS_HEADER,
  OVERRIDE_HEADERS,
  type VerifyRequest,
  type VerifierOptions,
  type Decision,
  type AllowDecision,
  type DenyDecision,
  type PolicyProvider,
  type PolicySnapshot,
  type RequestHeaders,
  type HeaderValue,
} from './verifier.js';
export {
  signRequest,
  createSignedFetch,
  HEADER_AUTHORIZATION,
  HEADER_TRANSCRIPT_SHA256,
  HEADER_PROOF,
  HEADER_NONCE,
  HEADER_BODY_SHA256,
  HEADER_SIGNED_HEADERS,
  type SignRequestOptions,
  type SignedRequest,
  type SoftwareIdentity,
  type SignedFetchOptions,
} from './signer.js';
export * from './bundle/index.js';
export { writeFileAtomic, writeFilesAtomic, trustUrlProblem } from './files.js';
