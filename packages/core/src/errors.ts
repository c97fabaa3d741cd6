/**
 * Errors. Bad input gets a `TrustPlaneError` carrying a stable `reason` (see reasons.ts) and a
 * human `detail`; programmer misuse gets a `TypeError`. Details never echo secret material.
 */
import { REASONS, type ReasonCode } from './reasons.js';

/**
 * Both error classes below describe bad *input*, an expected outcome on every hostile or broken
 * request, not a bug: they are built without a stack trace. Capturing one is most of the cost
 * of refusing a malformed request (~6 µs per error on this project's machine, against ~1 µs
 * without; a malformed passport builds two), and rejecting garbage must stay cheap
 * (docs/performance.md). Their `stack` is just the name and message.
 */
const NO_STACK = 0;

export class TrustPlaneError extends Error {
  readonly reason: ReasonCode;
  readonly status: number;
  readonly detail: string;

  constructor(reason: ReasonCode, detail: string, options?: { cause?: unknown }) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = NO_STACK;
    super(`${reason}: ${detail}`, options);
    Error.stackTraceLimit = limit;
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
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = NO_STACK;
    super(message === undefined ? code : `${code}: ${message}`);
    Error.stackTraceLimit = limit;
    this.name = 'FormatError';
    this.code = code;
  }
}
