/**
 * Option value parsers. A bad value is a usage error: commander reports an
 * `InvalidArgumentError` as `option '--x <v>' argument 'v' is invalid. …` and main() maps it
 * to exit code 2.
 */
import { InvalidArgumentError } from 'commander';
import type { HeaderEntry } from '@trustplane/core';

/** RFC 9110 token (header field names, methods). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than HTAB are not allowed in a header field value (RFC 9110 §5.5). */
function hasControl(value: string, allowTab: boolean): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && !(allowTab && c === 0x09)) || c === 0x7f) return true;
  }
  return false;
}
const DECIMAL = /^[0-9]+$/;

export function isToken(value: string): boolean {
  return TOKEN.test(value);
}

/** A non-empty identifier with no surrounding whitespace (issuer, subject, kid, …). */
export function parseText(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('it must not be empty.');
  if (value !== value.trim()) throw new InvalidArgumentError('it must not have leading or trailing whitespace.');
  if (hasControl(value, false)) throw new InvalidArgumentError('it must not contain control characters.');
  return value;
}

/** A non-empty value (file names and the like). */
export function parseNonEmpty(value: string): string {
  if (value === '') throw new InvalidArgumentError('it must not be empty.');
  return value;
}

function parseInteger(value: string, min: number): number {
  const n = DECIMAL.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(min === 0 ? 'it must be a non-negative integer.' : 'it must be a positive integer.');
  }
  return n;
}

export function parsePositiveInt(value: string): number {
  return parseInteger(value, 1);
}

export function parseNonNegativeInt(value: string): number {
  return parseInteger(value, 0);
}

/** `Name: value` → a header entry; repeatable (commander passes the previous list). */
export function collectHeader(value: string, previous: HeaderEntry[] | undefined): HeaderEntry[] {
  const colon = value.indexOf(':');
  if (colon < 0) throw new InvalidArgumentError("it must be 'Name: value'.");
  const name = value.slice(0, colon).trim();
  const headerValue = value.slice(colon + 1).trim();
  if (!isToken(name)) throw new InvalidArgumentError("it must be 'Name: value' with a valid header name.");
  if (hasControl(headerValue, true)) throw new InvalidArgumentError('header values must not contain control characters.');
  return [...(previous ?? []), { name, value: headerValue }];
}

/** `a,b,c` → header names (trimmed; empties dropped; each a valid header name). */
export function parseHeaderNames(value: string): string[] {
  const names = value
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  for (const n of names) {
    if (!isToken(n)) throw new InvalidArgumentError('it must be a comma-separated list of header names.');
  }
  return names;
}
