/**
 * Strict JSON for untrusted input. `JSON.parse` lets the last duplicate key win and silently
 * rounds large integers, so passports, bundles and IPC messages are parsed here instead:
 * RFC 8259 grammar only, duplicate keys rejected, integer literals outside the safe-integer
 * range rejected, lone surrogates rejected, nesting depth capped. Callers cap the byte size
 * before calling.
 */
import { FormatError } from './errors.js';
import { decodeUtf8Strict } from './encoding.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface ParseJsonOptions {
  /** Maximum nesting depth of arrays and objects (default 32). */
  maxDepth?: number;
}

class Parser {
  private pos = 0;

  constructor(
    private readonly src: string,
    private readonly maxDepth: number,
  ) {}

  fail(what: string): never {
    throw new FormatError('invalid_json', `${what} at offset ${this.pos}`);
  }

  ws(): void {
    const s = this.src;
    let p = this.pos;
    for (;;) {
      const c = s.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  parseDocument(): JsonValue {
    this.ws();
    const value = this.value(0);
    this.ws();
    if (this.pos !== this.src.length) this.fail('trailing data');
    return value;
  }

  value(depth: number): JsonValue {
    const c = this.src.charCodeAt(this.pos);
    switch (c) {
      case 0x7b /* { */:
        return this.object(depth + 1);
      case 0x5b /* [ */:
        return this.array(depth + 1);
      case 0x22 /* " */:
        return this.string();
      case 0x74 /* t */:
        return this.literal('true', true);
      case 0x66 /* f */:
        return this.literal('false', false);
      case 0x6e /* n */:
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail('unexpected character');
    }
  }

  literal<T extends JsonValue>(word: string, v: T): T {
    if (!this.src.startsWith(word, this.pos)) this.fail('invalid literal');
    this.pos += word.length;
    return v;
  }

  object(depth: number): JsonObject {
    if (depth > this.maxDepth) this.fail('nesting too deep');
    this.pos++; // {
    const out: JsonObject = {};
    this.ws();
    if (this.src.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.src.charCodeAt(this.pos) !== 0x22) this.fail('expected string key');
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) this.fail(`duplicate key ${JSON.stringify(key.slice(0, 64))}`);
      this.ws();
      if (this.src.charCodeAt(this.pos) !== 0x3a) this.fail("expected ':'");
      this.pos++;
      this.ws();
      const v = this.value(depth);
      if (key === '__proto__') {
        // Plain data, never a prototype change.
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = v;
      }
      this.ws();
      const c = this.src.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x7d) {
        this.pos++;
        return out;
      }
      this.fail("expected ',' or '}'");
    }
  }

  array(depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail('nesting too deep');
    this.pos++; // [
    const out: JsonValue[] = [];
    this.ws();
    if (this.src.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth));
      this.ws();
      const c = this.src.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x5d) {
        this.pos++;
        return out;
      }
      this.fail("expected ',' or ']'");
    }
  }

  string(): string {
    const s = this.src;
    let p = this.pos + 1; // after opening quote
    let out = '';
    let start = p;
    for (;;) {
      if (p >= s.length) {
        this.pos = p;
        this.fail('unterminated string');
      }
      const c = s.charCodeAt(p);
      if (c === 0x22) {
        out += s.slice(start, p);
        this.pos = p + 1;
        return out;
      }
      if (c < 0x20) {
        this.pos = p;
        this.fail('control character in string');
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // A raw surrogate can only be well-formed as a high+low pair.
        const d = s.charCodeAt(p + 1);
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          p += 2;
          continue;
        }
        this.pos = p;
        this.fail('lone surrogate in string');
      }
      if (c !== 0x5c) {
        p++;
        continue;
      }
      out += s.slice(start, p);
      const e = s.charCodeAt(p + 1);
      p += 2;
      switch (e) {
        case 0x22: out += '"'; break;
        case 0x5c: out += '\\'; break;
        case 0x2f: out += '/'; break;
        case 0x62: out += '\b'; break;
        case 0x66: out += '\f'; break;
        case 0x6e: out += '\n'; break;
        case 0x72: out += '\r'; break;
        case 0x74: out += '\t'; break;
        case 0x75: {
          const cu = this.hex4(p);
          p += 4;
          if (cu >= 0xd800 && cu <= 0xdbff) {
            if (s.charCodeAt(p) !== 0x5c || s.charCodeAt(p + 1) !== 0x75) {
              this.pos = p;
              this.fail('lone surrogate escape');
            }
            const lo = this.hex4(p + 2);
            if (lo < 0xdc00 || lo > 0xdfff) {
              this.pos = p;
              this.fail('lone surrogate escape');
            }
            p += 6;
            out += String.fromCharCode(cu, lo);
          } else if (cu >= 0xdc00 && cu <= 0xdfff) {
            this.pos = p;
            this.fail('lone surrogate escape');
          } else {
            out += String.fromCharCode(cu);
          }
          break;
        }
        default:
          this.pos = p - 1;
          this.fail('invalid escape');
      }
      start = p;
    }
  }

  hex4(p: number): number {
    const h = this.src.slice(p, p + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) {
      this.pos = p;
      this.fail('invalid \\u escape');
    }
    return parseInt(h, 16);
  }

  number(): number {
    const s = this.src;
    const start = this.pos;
    let p = start;
    if (s.charCodeAt(p) === 0x2d) p++;
    const firstDigit = s.charCodeAt(p);
    if (firstDigit === 0x30) {
      p++;
    } else if (firstDigit >= 0x31 && firstDigit <= 0x39) {
      while (isDigit(s.charCodeAt(p))) p++;
    } else {
      this.pos = p;
      this.fail('invalid number');
    }
    let integer = true;
    if (s.charCodeAt(p) === 0x2e) {
      integer = false;
      p++;
      if (!isDigit(s.charCodeAt(p))) {
        this.pos = p;
        this.fail('invalid fraction');
      }
      while (isDigit(s.charCodeAt(p))) p++;
    }
    const e = s.charCodeAt(p);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      p++;
      const sign = s.charCodeAt(p);
      if (sign === 0x2b || sign === 0x2d) p++;
      if (!isDigit(s.charCodeAt(p))) {
        this.pos = p;
        this.fail('invalid exponent');
      }
      while (isDigit(s.charCodeAt(p))) p++;
    }
    const n = Number(s.slice(start, p));
    if (integer && !Number.isSafeInteger(n)) {
      this.pos = start;
      this.fail('integer outside the safe range');
    }
    if (!Number.isFinite(n)) {
      this.pos = start;
      this.fail('number out of range');
    }
    this.pos = p;
    return n;
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Parse a JSON text strictly (see module comment). Throws `FormatError('invalid_json')`. */
export function parseJsonStrict(text: string, options: ParseJsonOptions = {}): JsonValue {
  const maxDepth = options.maxDepth ?? 32;
  return fastParse(text, maxDepth) ?? new Parser(text, maxDepth).parseDocument();
}

/**
 * The native `JSON.parse`, used only where its result provably equals the strict parser's: the
 * text has no backslash (so no escapes, and every string's value is its raw text) and no lone
 * surrogate; no number is non-finite or an unsafe integer; nesting is within `maxDepth`; and no
 * key repeats. `JSON.parse` keeps only the last of repeated keys, so repeats are found by
 * counting: in valid JSON every ':' outside strings separates one key from its value, so
 * `colons(text) = pairs + colons inside strings` holds for the parsed result exactly when no
 * pair was lost. Anything else (including every error) goes to the strict parser, which gives
 * the verdict and the error message. `undefined` means "not decided here".
 */
function fastParse(text: string, maxDepth: number): JsonValue | undefined {
  if (text.length > FAST_PARSE_MAX_CHARS || text.includes('\\') || !(text as WellFormedCheck).isWellFormed()) return undefined;
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch {
    return undefined;
  }
  let colons = 0;
  for (let p = text.indexOf(':'); p !== -1; p = text.indexOf(':', p + 1)) colons++;
  const counted = countPairs(value, 0, maxDepth);
  return counted === colons ? value : undefined;
}

const FAST_PARSE_MAX_CHARS = 1 << 20;
/** `String.prototype.isWellFormed` (ES2024; Node >= 20): false when the text has a lone surrogate. */
type WellFormedCheck = string & { isWellFormed(): boolean };

/** The strict parser alone, without the `JSON.parse` fast path (differential tests). */
export function parseJsonStrictReference(text: string, options: ParseJsonOptions = {}): JsonValue {
  return new Parser(text, options.maxDepth ?? 32).parseDocument();
}

function colonsIn(s: string): number {
  let n = 0;
  for (let p = s.indexOf(':'); p !== -1; p = s.indexOf(':', p + 1)) n++;
  return n;
}

/** Key/value pairs plus ':' inside strings, or -1 when the value must go to the strict parser. */
function countPairs(v: JsonValue, depth: number, maxDepth: number): number {
  if (typeof v === 'string') return colonsIn(v);
  if (typeof v === 'number') return Number.isFinite(v) && (Number.isSafeInteger(v) || !Number.isInteger(v)) ? 0 : -1;
  if (typeof v !== 'object' || v === null) return 0;
  if (depth + 1 > maxDepth) return -1;
  let n = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const c = countPairs(v[i]!, depth + 1, maxDepth);
      if (c < 0) return -1;
      n += c;
    }
    return n;
  }
  const keys = Object.keys(v);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const c = countPairs(v[k]!, depth + 1, maxDepth);
    if (c < 0) return -1;
    n += 1 + colonsIn(k) + c;
  }
  return n;
}

/** Strict UTF-8 bytes → strict JSON, with a byte cap checked before any decoding. */
export function parseJsonBytes(bytes: Uint8Array, maxBytes: number, what = 'JSON document', options: ParseJsonOptions = {}): JsonValue {
  if (bytes.byteLength > maxBytes) throw new FormatError('too_large', `${what} exceeds ${maxBytes} bytes`);
  return parseJsonStrict(decodeUtf8Strict(bytes, what), options);
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
