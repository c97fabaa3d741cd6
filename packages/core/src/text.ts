/**
 * Text helpers shared by the transcript and the signer, chosen to match TrustPlane's Python SDK
 * byte for byte (SPEC §1): "trim" is Python's `str.strip()` whitespace set, and case mapping is
 * ASCII-only (HTTP methods, schemes, hosts and header names are ASCII tokens).
 */

// Python's str.isspace() set: ASCII \t\n\v\f\r, \x1c-\x1f, space, \x85, \xa0 and the Unicode
// space separators / line separators. JavaScript's String#trim differs (it strips \ufeff and not
// \x1c-\x1f or \x85), so it cannot be used for the contract.
const PY_WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_TRIM = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'g');

function isPyWhitespaceCode(c: number): boolean {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c === 0x85 || c === 0xa0 || c >= 0x1680;
}

/** Python `str.strip()`. Fast path: nothing to strip when both ends are plainly non-space. */
export function pyTrim(value: string): string {
  if (value.length === 0) return value;
  if (!isPyWhitespaceCode(value.charCodeAt(0)) && !isPyWhitespaceCode(value.charCodeAt(value.length - 1))) {
    return value;
  }
  return value.replace(PY_TRIM, '');
}

export function asciiLower(value: string): string {
  return /[A-Z]/.test(value) ? value.replace(/[A-Z]+/g, (m) => m.toLowerCase()) : value;
}

export function asciiUpper(value: string): string {
  return /[a-z]/.test(value) ? value.replace(/[a-z]+/g, (m) => m.toUpperCase()) : value;
}
