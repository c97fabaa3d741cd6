/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): the bytes that bundle signatures cover
 * (SPEC §9.4). Object members sorted by the UTF-16 code units of their names, no whitespace,
 * numbers in the ECMAScript Number-to-String form, strings with the minimal escaping of
 * RFC 8785 §3.2.2.2, UTF-8 output. Anything that is not I-JSON data is a `TypeError`:
 * non-finite numbers, lone surrogates, bigint, functions, class instances.
 */

const SHORT_ESCAPES: Readonly<Record<number, string>> = { 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0c: '\\f', 0x0d: '\\r', 0x22: '\\"', 0x5c: '\\\\' };

function serializeString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      // Only a high surrogate followed by a low one is a character; anything else is not I-JSON.
      const d = s.charCodeAt(i + 1);
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
      throw new TypeError('JCS: a string contains a lone surrogate');
    }
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(start, i) + (SHORT_ESCAPES[c] ?? `\\u${c.toString(16).padStart(4, '0')}`);
    start = i + 1;
  }
  return `${out}${s.slice(start)}"`;
}

function serializeNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError('JCS: NaN and Infinity are not JSON numbers');
  // Number.prototype.toString is the ECMAScript serialization RFC 8785 §3.2.2.3 requires; -0 → "0".
  return Object.is(n, -0) ? '0' : String(n);
}

function serialize(value: unknown, depth: number): string {
  if (depth > 256) throw new TypeError('JCS: nesting too deep');
  switch (typeof value) {
    case 'string':
      return serializeString(value);
    case 'number':
      return serializeNumber(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        return `[${value.map((v: unknown) => {
          if (v === undefined) throw new TypeError('JCS: undefined in an array');
          return serialize(v, depth + 1);
        }).join(',')}]`;
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) throw new TypeError('JCS: only plain objects are JSON objects');
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, exactly RFC 8785 §3.2.3 (locale-independent).
      const names = Object.keys(obj).sort();
      const members: string[] = [];
      for (const name of names) {
        const v = obj[name];
        if (v === undefined) continue; // as JSON.stringify: an absent optional property
        members.push(`${serializeString(name)}:${serialize(v, depth + 1)}`);
      }
      return `{${members.join(',')}}`;
    }
    case 'bigint':
    case 'function':
    case 'symbol':
    case 'undefined':
      throw new TypeError(`JCS: a ${typeof value} is not JSON data`);
  }
}

/** The RFC 8785 canonical text of a JSON value. */
export function canonicalizeJson(value: unknown): string {
  return serialize(value, 0);
}

/** The RFC 8785 canonical UTF-8 bytes of a JSON value. */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalizeJson(value), 'utf8');
}
