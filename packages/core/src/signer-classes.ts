/**
 * Signer classes (`cnf.key_binding`), ranked (SPEC §3, conformance/v1/signer-taxonomy-v1.json):
 * software 10 < remote_kms 20 < hardware_local 30 < attested_workload 40. A request meets a
 * minimum only when its rank is at least the required rank.
 */
export const SIGNER_CLASSES = {
  software: 10,
  remote_kms: 20,
  hardware_local: 30,
  attested_workload: 40,
} as const;

export type SignerClass = keyof typeof SIGNER_CLASSES;

export const SIGNER_CLASS_ORDER: readonly SignerClass[] = ['software', 'remote_kms', 'hardware_local', 'attested_workload'];

export function isSignerClass(value: unknown): value is SignerClass {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(SIGNER_CLASSES, value);
}

export function signerRank(value: SignerClass): number {
  return SIGNER_CLASSES[value];
}

export function meetsMinimum(actual: SignerClass, required: SignerClass): boolean {
  return SIGNER_CLASSES[actual] >= SIGNER_CLASSES[required];
}
