/**
 * Errors. Bad input gets a `TrustPlaneError` carrying a stable `reason` (see reasons.ts) and a
 * human `detail`; programmer misuse gets a `TypeError`. Details never echo secret material.
 */
import { REASONS, type ReasonCode } from './reasons.js';

export class TrustPlaneError extends Error {
  readonly reason: ReasonCode;
  readonly status: number;
  readonly detail: string;

  constructor(reason: ReasonCode, detail: string, options?: { cause?: unknown }) {
    super(`${reason}: ${detail}`, options);
    this.name = 'TrustPlaneError';
    this.reason = reason;
    this.status = REASONS[reason].status;
    this.detail = detail;
  }
}

/**
 * A failure of an input format below the verifier (transcript inputs, base64url, JSON, keys):
 * `code` is a stable snake_case string of its own, which the verifier maps to a reason code.
 */
export class FormatError extends Error {
  readonly code: string;

  constructor(code: string, message?: string) {
    super(message === undefined ? code : `${code}: ${message}`);
    this.name = 'FormatError';
    this.code = code;
  }
}
