/**
 * Bundles (SPEC §4, §9.3, §9.4): RFC 8785 canonical JSON, Ed25519 document signatures, the
 * JSON Schemas, the loader and the hot-reloading watcher, and the pure build / merge / remove
 * functions behind `trustplane bundle`.
 */
export { canonicalizeJson, canonicalJsonBytes } from './jcs.js';
export {
  signDocument,
  verifyDocumentSignature,
  documentSigningInput,
  isUnsignedDocument,
  SIGNATURE_FORMAT,
  SIGNATURE_ALG,
  UNSIGNED_FORMAT,
  UNSIGNED_SIGNED_BY,
  UNSIGNED_SIGNATURE,
  DEV_ALLOW_UNSIGNED_FLAG,
  type DocumentSigner,
  type DocumentSignature,
  type SignedDocument,
  type SignDocumentOptions,
  type VerifiedDocumentSignature,
} from './sign.js';
export { BundleFormatError, formatProblem, BUNDLE_ERROR_CODES, type BundleProblem, type BundleErrorCode } from './problems.js';
export {
  TRUST_MATERIAL_SCHEMA,
  POLICY_BUNDLE_SCHEMA,
  BUNDLE_CONFIG_SCHEMA,
  TRUST_MATERIAL_SCHEMA_ID,
  POLICY_BUNDLE_SCHEMA_ID,
  BUNDLE_CONFIG_SCHEMA_ID,
  BUNDLE_SCHEMAS,
} from './schema-documents.js';
export { validateDocument, validateTrustMaterial, validatePolicyBundle, compilePair, type BundleDocumentKind, type CompilePairOptions } from './schema.js';
export { trustMaterialFromJwks, trustKeysFromJwks, type JwksConversionOptions, type JwksKeys } from './jwks.js';
export {
  loadBundlePair,
  parseBundlePair,
  parseBundleDocument,
  readBundleFile,
  checkDocumentSignature,
  checkPairing,
  documentContentSha256,
  assertSigningKeysConfigured,
  MAX_BUNDLE_BYTES,
  type BundlePair,
  type BundleSigningKeys,
  type SignatureCheck,
  type ParseBundlePairOptions,
  type LoadBundlePairOptions,
} from './load.js';
export { BundleWatcher, BundleFollower, type BundleWatcherOptions, type BundleFollowerOptions, type BundleLoadedEvent, type BundleRejectedEvent, type BundleConfirmedEvent, type BundlePairBytes, type CheckOutcome } from './watch.js';
export { readBundleState, parseBundleState, writeBundleState, formatBundleState, checkAgainstMark, BUNDLE_STATE_VERSION, type BundleMark, type BundleState } from './state.js';
export { formatTrustMaterial, formatPolicyBundle } from './format.js';
export { buildBundles, BUNDLE_CONFIG_VERSION, FRESHNESS_CLASSES, type BuildBundlesOptions, type BuiltBundles } from './build.js';
export { mergeSource, removeSource, type MergeSourceOptions, type RemoveSourceOptions, type BundleEditResult, type BundleEditFiles } from './merge.js';
