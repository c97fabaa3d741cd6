/**
 * Property tests for core's parsers of untrusted bytes (issue 17, "Standing suites"): base64url,
 * strict JSON, passport parse and claims, query normalization, header selection. Each property
 * says the result is a value or the module's documented error (FormatError with its code, or a
 * TrustPlaneError with its reason), never another exception, plus the semantic property where
 * one exists. Time-boxed and seeded through testkit's PropertyTally (PROPERTY_SEED replays).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FormatError,
  ManualClock,
  StaticPolicyProvider,
  TrustPlaneError,
  Verifier,
  buildTranscript,
  decodeBase64url,
  encodeBase64url,
  normalizeQuery,
  parseJsonBytes,
  parseJsonStrict,
  parsePassport,
  pyTrim,
  sha256Hex,
  validatePassportClaims,
  type HeaderEntry,
  type JsonObject,
  type JsonValue,
  type TranscriptInput,
  type VerifyRequest,
} from '../src/index.js';
import { PropertyTally, SpyReplayStore, T0, compiled, issuerKey, makeRequest, readVector } from './helpers.js';

const tally = new PropertyTally('core parsers');

/** The error a parser documents, or a failure naming what was thrown instead. */
function expectFormatError(err: unknown, codes: readonly string[], input: unknown): void {
  if (err instanceof FormatError && codes.includes(err.code)) return;
  assert.fail(`expected FormatError(${codes.join('|')}) for ${JSON.stringify(input)?.slice(0, 300)}, got ${String(err)} (${(err as Error)?.constructor?.name})`);
}

function expectReason(err: unknown, reasons: readonly string[], input: unknown): void {
  if (err instanceof TrustPlaneError && reasons.includes(err.reason)) return;
  assert.fail(`expected TrustPlaneError(${reasons.join('|')}) for ${JSON.stringify(input)?.slice(0, 300)}, got ${String(err)} (${(err as Error)?.constructor?.name})`);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries reaching the interesting space: escapes, unicode, lone surrogates, prototype keys.

const LONE_SURROGATES = ['\ud800', '\udbff', '\udc00', '\udfff'];
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__', 'valueOf'];
const B64URL_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('');

/** One UTF-16 unit or pair: ASCII mostly, then Latin-1, BMP, astral, lone surrogates. */
const anyUnit = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x100, max: 0xffff }).filter((c) => c < 0xd800 || c > 0xdfff).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
  { weight: 1, arbitrary: fc.constantFrom(...LONE_SURROGATES) },
);

const text = (units: fc.Arbitrary<string>, maxLength: number): fc.Arbitrary<string> => fc.array(units, { maxLength }).map((a) => a.join(''));

const jsonKey = fc.oneof({ weight: 3, arbitrary: fc.constantFrom('a', 'b', 'kid', 'alg', 'iss', 'x:y', '') }, { weight: 2, arbitrary: fc.constantFrom(...PROTO_KEYS) }, { weight: 1, arbitrary: text(anyUnit, 6) });

// ---------------------------------------------------------------------------------------------
// base64url (encoding.ts)

test('property: base64url decode(encode(x)) = x for byte strings up to and at the length cap', () => {
  tally.check(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 96 }), fc.uint8Array({ minLength: 6000, maxLength: 6200 })), fc.boolean(), (bytes, atCap) => {
      const s = encodeBase64url(bytes);
      assert.match(s, /^[A-Za-z0-9_-]*$/);
      // At the cap exactly it decodes; one character under the cap it is refused, before decoding.
      assert.deepEqual(decodeBase64url(s, atCap ? s.length : s.length + 10), Buffer.from(bytes));
      if (s.length > 0) assert.throws(() => decodeBase64url(s, s.length - 1), (e) => e instanceof FormatError && e.code === 'invalid_base64url');
    }),
    { numRuns: 400 },
  );
});

test('property: base64url text that decodes re-encodes to itself; all else is invalid_base64url', () => {
  // Mostly the alphabet (so many inputs decode), plus what Buffer.from silently accepts.
  const unit = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...B64URL_CHARS) }, { weight: 2, arbitrary: fc.constantFrom('=', '+', '/', ' ', '\n', '.', '%', '\u00e9', '\uff21') }, { weight: 1, arbitrary: anyUnit });
  tally.check(
    fc.property(text(unit, 40), (s) => {
      let b: Buffer;
      try {
        b = decodeBase64url(s, 64);
      } catch (e) {
        expectFormatError(e, ['invalid_base64url'], s);
        return;
      }
      assert.equal(encodeBase64url(b), s);
    }),
    { numRuns: 4000 },
  );
});

// ---------------------------------------------------------------------------------------------
// strict JSON (json.ts)

/** JSON-ish text: structure characters, escapes (valid and not), surrogates, numbers near 2^53. */
const jsonJunk = text(
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('{', '}', '[', ']', ':', ',', '"', ' ', 'a', '1', '0', '-', '.', 'e', 'E', '+', 'true', 'null', 'false') },
    { weight: 3, arbitrary: fc.constantFrom('\\"', '\\\\', '\\/', '\\n', '\\u0041', '\\ud83d\\ude00', '\\ud800', '\\udc00', '\\u00', '\\x41', '\\') },
    { weight: 2, arbitrary: fc.constantFrom('"__proto__"', '"constructor"', '"__proto__":', '9007199254740991', '9007199254740992', '-9007199254740993', '1e400', '1.5', '0.0') },
    { weight: 1, arbitrary: anyUnit },
  ),
  30,
);

test('property: strict JSON returns a value or invalid_json; when JSON.parse accepts too, the values are equal', () => {
  tally.check(
    fc.property(jsonJunk, (s) => {
      let strict: JsonValue;
      try {
        strict = parseJsonStrict(s);
      } catch (e) {
        expectFormatError(e, ['invalid_json'], s);
        return;
      }
      // The strict parser accepts a subset of what JSON.parse accepts, with the same meaning.
      assert.deepEqual(strict, JSON.parse(s), JSON.stringify(s));
    }),
    { numRuns: 6000 },
  );
});

/** A JSON value written out by hand, so that members (and duplicates) can be placed at will. */
type Doc = { kind: 'leaf'; text: string } | { kind: 'arr'; items: Doc[] } | { kind: 'obj'; members: [string, Doc][] };

const docArb: fc.Arbitrary<Doc> = fc.letrec<{ doc: Doc }>((tie) => ({
  doc: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(fc.integer(), fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.boolean(), fc.constant(null), text(anyUnit.filter((u) => !LONE_SURROGATES.includes(u)), 8)).map((v): Doc => ({ kind: 'leaf', text: JSON.stringify(v) })),
    fc.array(tie('doc'), { maxLength: 3 }).map((items): Doc => ({ kind: 'arr', items })),
    fc.uniqueArray(fc.tuple(jsonKey.filter((k) => !LONE_SURROGATES.some((l) => k.includes(l))), tie('doc')), { maxLength: 4, selector: ([k]) => k }).map((members): Doc => ({ kind: 'obj', members })),
  ),
})).doc;

function write(d: Doc): string {
  if (d.kind === 'leaf') return d.text;
  if (d.kind === 'arr') return `[${d.items.map(write).join(',')}]`;
  return `{${d.members.map(([k, v]) => `${JSON.stringify(k)}:${write(v)}`).join(',')}}`;
}

/** Every object in `d`, depth first (the places a duplicate key can be put). */
function objects(d: Doc, out: { members: [string, Doc][] }[] = []): { members: [string, Doc][] }[] {
  if (d.kind === 'obj') {
    out.push(d);
    for (const [, v] of d.members) objects(v, out);
  } else if (d.kind === 'arr') for (const v of d.items) objects(v, out);
  return out;
}

/** Own keys of every object in a parsed value, in order (a `__proto__` member must stay one). */
function ownKeyShape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(ownKeyShape);
  if (v !== null && typeof v === 'object') {
    assert.equal(Object.getPrototypeOf(v), Object.prototype, 'a parsed object keeps the plain prototype');
    return Object.keys(v).map((k) => [k, ownKeyShape((v as Record<string, unknown>)[k])]);
  }
  return v;
}

function docShape(d: Doc): unknown {
  if (d.kind === 'leaf') return JSON.parse(d.text) as unknown;
  if (d.kind === 'arr') return d.items.map(docShape);
  // Integer-like keys come first in JS property order, as JSON.parse also orders them.
  const members = [...d.members];
  const isIndex = (k: string): boolean => /^(?:0|[1-9]\d*)$/.test(k) && Number(k) < 2 ** 32 - 1;
  members.sort(([a], [b]) => (isIndex(a) && isIndex(b) ? Number(a) - Number(b) : isIndex(a) ? -1 : isIndex(b) ? 1 : 0));
  return members.map(([k, v]) => [k, docShape(v)]);
}

test('property: strict JSON keeps every member (prototype keys included) and refuses any duplicated key', () => {
  tally.check(
    fc.property(docArb, fc.nat(), fc.nat(), docArb, (doc, which, at, dupValue) => {
      const textOk = write(doc);
      const parsed = parseJsonStrict(textOk);
      assert.deepEqual(ownKeyShape(parsed), docShape(doc), textOk);
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
      const objs = objects(doc).filter((o) => o.members.length > 0);
      if (objs.length === 0) return;
      const o = objs[which % objs.length]!;
      const key = o.members[which % o.members.length]![0];
      const saved = [...o.members];
      o.members.splice(at % (o.members.length + 1), 0, [key, dupValue]);
      const textDup = write(doc);
      o.members.splice(0, o.members.length, ...saved);
      assert.throws(() => parseJsonStrict(textDup), (e) => e instanceof FormatError && e.code === 'invalid_json' && /duplicate key/.test(e.message), textDup);
    }),
    { numRuns: 1500 },
  );
});

test('property: strict JSON nesting is capped exactly at the configured depth, arrays and objects alike', () => {
  tally.check(
    fc.property(fc.integer({ min: 1, max: 48 }), fc.integer({ min: 1, max: 40 }), fc.array(fc.boolean(), { minLength: 48, maxLength: 48 }), (depth, maxDepth, kinds) => {
      let s = '1';
      for (let i = 0; i < depth; i++) s = kinds[i] === true ? `[${s}]` : `{"${PROTO_KEYS[i % PROTO_KEYS.length]!}":${s}}`;
      if (depth <= maxDepth) assert.doesNotThrow(() => parseJsonStrict(s, { maxDepth }));
      else assert.throws(() => parseJsonStrict(s, { maxDepth }), (e) => e instanceof FormatError && e.code === 'invalid_json');
    }),
    { numRuns: 600 },
  );
});

test('property: strict JSON from bytes: a value, or too_large / invalid_utf8 / invalid_json, never another error', () => {
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    jsonJunk.map((s) => Buffer.from(s, 'utf8')),
    fc.tuple(jsonJunk, fc.uint8Array({ minLength: 1, maxLength: 3 }), fc.nat()).map(([s, junk, at]) => {
      const b = Buffer.from(s, 'utf8');
      const p = b.length === 0 ? 0 : at % b.length;
      return Buffer.concat([b.subarray(0, p), Buffer.from(junk.map((x) => x | 0x80)), b.subarray(p)]);
    }),
  );
  tally.check(
    fc.property(bytes, fc.integer({ min: 0, max: 48 }), (b, max) => {
      try {
        const v = parseJsonBytes(b, max);
        assert.ok(b.byteLength <= max);
        assert.deepEqual(v, JSON.parse(Buffer.from(b).toString('utf8')));
      } catch (e) {
        expectFormatError(e, ['too_large', 'invalid_utf8', 'invalid_json'], Buffer.from(b).toString('hex'));
        if (b.byteLength > max) assert.equal((e as FormatError).code, 'too_large', 'the size cap is checked first');
      }
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// passport parse and claims (passport.ts)

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
const SIG86 = encodeBase64url(Buffer.alloc(64, 7));

const headerArb: fc.Arbitrary<string> = fc.oneof(
  fc
    .record(
      {
        alg: fc.oneof(fc.constantFrom('EdDSA', 'none', 'HS256', 'eddsa', 'EdDSA ', 'ES256'), fc.jsonValue({ maxDepth: 1 })),
        kid: fc.oneof(fc.constantFrom('client-key-1', '', 'k'.repeat(256), 'k'.repeat(257), '__proto__'), fc.jsonValue({ maxDepth: 1 })),
        typ: fc.oneof(fc.constant('JWT'), fc.jsonValue({ maxDepth: 1 })),
        crit: fc.array(fc.string(), { maxLength: 2 }),
        jwk: fc.object({ maxDepth: 1 }),
        x5u: fc.constant('https://evil.example/x'),
      },
      { requiredKeys: [] },
    )
    .map(b64json),
  docArb.map((d) => Buffer.from(write(d), 'utf8').toString('base64url')),
  text(fc.constantFrom(...B64URL_CHARS, '=', '+', '/'), 20),
);

function validPayload(): JsonObject {
  const nowS = T0 / 1000;
  return {
    iss: 'https://issuer.example/software-jwks',
    sub: 'service:orders-client',
    aud: 'orders-api',
    iat: nowS,
    exp: nowS + 300,
    jti: 'jti-property-1',
    trust_domain: 'example.local',
    cnf: { kid: 'cnf-1', public_key_b64url: encodeBase64url(issuerKey.publicKey), key_binding: 'software' },
  };
}

/** A JSON value likely to sit at a claim: near-valid strings and numbers, objects with prototype keys. */
const claimValue: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.constantFrom<JsonValue>('', ' ', 'x', ' jti ', 'jti\u0085', 'a'.repeat(1025), 0, -1, 1.5, T0 / 1000, T0 / 1000 + 1e6, 2 ** 53 - 1, null, true, [], ['orders-api'], [1], {}),
  fc.dictionary(jsonKey, fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.constant(null)), { maxKeys: 4 }) as fc.Arbitrary<JsonValue>,
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>,
);

const CLAIM_NAMES = ['iss', 'sub', 'aud', 'iat', 'exp', 'nbf', 'jti', 'trust_domain', 'cnf', 'ctx', 'provenance', ...PROTO_KEYS];
const CNF_NAMES = ['kid', 'public_key_b64url', 'key_binding', '__proto__', 'constructor'];

test('property: parsePassport returns a parsed passport or malformed_passport / unsupported_passport_algorithm', () => {
  const token = fc.oneof(
    fc.tuple(headerArb, fc.oneof(fc.constant(b64json(validPayload())), docArb.map((d) => Buffer.from(write(d)).toString('base64url'))), fc.oneof(fc.constant(SIG86), text(fc.constantFrom(...B64URL_CHARS, '='), 90))).map(([h, p, s]) => `${h}.${p}.${s}`),
    text(fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...B64URL_CHARS) }, { weight: 2, arbitrary: fc.constant('.') }, { weight: 1, arbitrary: anyUnit }), 120),
    fc.integer({ min: 8100, max: 8300 }).map((n) => `${b64json({ alg: 'EdDSA', kid: 'k' })}.${'A'.repeat(n)}.${SIG86}`),
  );
  tally.check(
    fc.property(token, (t) => {
      let parsed;
      try {
        parsed = parsePassport(t);
      } catch (e) {
        expectReason(e, ['malformed_passport', 'unsupported_passport_algorithm'], t);
        return;
      }
      // What parses has the documented shape: EdDSA, a short kid, a 64-byte signature, an object.
      assert.equal(parsed.header.alg, 'EdDSA');
      assert.ok(typeof parsed.header.kid === 'string' && parsed.header.kid.length >= 1 && parsed.header.kid.length <= 256);
      assert.equal(parsed.signature.length, 64);
      assert.ok(parsed.payload !== null && typeof parsed.payload === 'object' && !Array.isArray(parsed.payload));
      assert.equal(parsed.signingInput.toString('latin1'), t.slice(0, t.lastIndexOf('.')));
    }),
    { numRuns: 3000 },
  );
});

test('property: validatePassportClaims on mutated claims returns checked claims or a claims/time reason', () => {
  const mutation = fc.array(
    fc.oneof(
      fc.record({ op: fc.constant('set' as const), name: fc.constantFrom(...CLAIM_NAMES), value: claimValue }),
      fc.record({ op: fc.constant('delete' as const), name: fc.constantFrom(...CLAIM_NAMES) }),
      fc.record({ op: fc.constant('cnf' as const), name: fc.constantFrom(...CNF_NAMES), value: claimValue }),
      fc.record({ op: fc.constant('set' as const), name: fc.constant('ctx'), value: fc.dictionary(jsonKey, fc.string({ maxLength: 4 }), { maxKeys: 4 }) }),
    ),
    { minLength: 1, maxLength: 3 },
  );
  tally.check(
    fc.property(mutation, fc.integer({ min: -2000, max: 2000 }), (ops, offsetS) => {
      const p = validPayload();
      for (const m of ops) {
        if (m.op === 'delete') delete p[m.name];
        else if (m.op === 'set') Object.defineProperty(p, m.name, { value: m.value, enumerable: true, writable: true, configurable: true });
        else if (p['cnf'] !== null && typeof p['cnf'] === 'object' && !Array.isArray(p['cnf'])) Object.defineProperty(p['cnf'], m.name, { value: m.value, enumerable: true, writable: true, configurable: true });
      }
      const nowMs = T0 + offsetS * 1000;
      let claims;
      try {
        claims = validatePassportClaims(p, { nowMs });
      } catch (e) {
        expectReason(e, ['invalid_passport_claims', 'passport_not_yet_valid', 'passport_expired', 'passport_lifetime_exceeded'], p);
        return;
      }
      // Whatever passes holds what the verifier relies on.
      for (const s of [claims.iss, claims.sub, claims.aud, claims.jti, claims.trust_domain, claims.cnf.kid]) assert.ok(typeof s === 'string' && s !== '');
      assert.equal(pyTrim(claims.jti), claims.jti);
      assert.ok(Number.isSafeInteger(claims.iat) && Number.isSafeInteger(claims.exp) && claims.iat < claims.exp && claims.exp - claims.iat <= 900);
      assert.ok(claims.iat <= nowMs / 1000 + 30 && claims.exp > nowMs / 1000 - 30);
      assert.equal(claims.cnf.public_key_b64url.length, 43);
      assert.ok(['software', 'remote_kms', 'hardware_local', 'attested_workload'].includes(claims.cnf.key_binding));
      // A context passes through whole: every member, `__proto__` included, is kept as a string.
      const ctx = p['ctx'];
      if (ctx !== undefined) {
        assert.ok(claims.ctx !== undefined);
        assert.deepEqual(Object.keys(claims.ctx), Object.keys(ctx as object));
        for (const k of Object.keys(claims.ctx)) assert.equal(Object.getOwnPropertyDescriptor(claims.ctx, k)?.value, (ctx as Record<string, unknown>)[k]);
      }
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// A random mutation of a valid passport (or of its request) never verifies.

function mutateToken(token: string, kind: number, at: number, ch: string, bit: number): string {
  const segs = token.split('.');
  switch (kind % 8) {
    case 0: // replace one character
      return token.slice(0, at % token.length) + ch + token.slice((at % token.length) + 1);
    case 1: // insert one character
      return token.slice(0, at % (token.length + 1)) + ch + token.slice(at % (token.length + 1));
    case 2: // delete one character
      return token.slice(0, at % token.length) + token.slice((at % token.length) + 1);
    case 3: {
      // flip a bit of the decoded header or claims, re-encoded (well-formed, wrongly signed)
      const i = at % 2;
      const raw = Buffer.from(segs[i]!, 'base64url');
      raw[at % raw.length]! ^= 1 << bit % 8;
      segs[i] = raw.toString('base64url');
      return segs.join('.');
    }
    case 4: {
      // flip a bit of the signature
      const sig = Buffer.from(segs[2]!, 'base64url');
      sig[at % 64]! ^= 1 << bit % 8;
      segs[2] = sig.toString('base64url');
      return segs.join('.');
    }
    case 5: // swap two segments
      return at % 2 === 0 ? `${segs[1]!}.${segs[0]!}.${segs[2]!}` : `${segs[0]!}.${segs[2]!}.${segs[1]!}`;
    case 6: // truncate
      return token.slice(0, at % token.length);
    default: {
      // re-sign nothing, but re-encode the claims with a changed member (the signature is the old one)
      const claims = JSON.parse(Buffer.from(segs[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
      const names = ['sub', 'iss', 'aud', 'jti', 'trust_domain', 'iat', 'exp'];
      const n = names[at % names.length]!;
      claims[n] = typeof claims[n] === 'number' ? (claims[n]) + 1 + (bit % 5) : `${String(claims[n])}${ch}`;
      segs[1] = b64json(claims);
      return segs.join('.');
    }
  }
}

test('property: a randomly mutated passport never verifies, is never internal_error, and consumes no jti', async () => {
  const policy = compiled();
  const clockMs = T0 + 1000;
  const base = makeRequest({ path: '/v1/orders/ord_1', query: 'b=2&a=%7E', nonce: 'nonce-property' });
  const token = (base.headers['authorization'] as string).slice('Bearer '.length);
  const newVerifier = (): { v: Verifier; spy: SpyReplayStore } => {
    const spy = new SpyReplayStore();
    return { v: new Verifier({ policy: new StaticPolicyProvider(policy, T0), replayStore: spy, clock: new ManualClock(clockMs) }), spy };
  };
  // Control: the request as signed is accepted (so every denial below is the mutation's doing).
  const control = await newVerifier().v.verify(base);
  assert.equal(control.allowed, true, JSON.stringify(control));
  const ch = fc.oneof(fc.constantFrom(...B64URL_CHARS, '.', '=', ' ', '+'), anyUnit);
  await tally.checkAsync(
    fc.asyncProperty(fc.nat(7), fc.nat(), ch, fc.nat(7), async (kind, at, c, bit) => {
      const mutated = mutateToken(token, kind, at, c, bit);
      // Surrounding whitespace is not part of the token (the Authorization value is trimmed).
      fc.pre(mutated.trim() !== token);
      const { v, spy } = newVerifier();
      const req: VerifyRequest = { ...base, headers: { ...base.headers, authorization: `Bearer ${mutated}` } };
      const d = await v.verify(req);
      assert.equal(d.allowed, false, `mutated passport verified: ${mutated}`);
      assert.notEqual(d.reason, 'internal_error', d.allowed ? '' : d.detail);
      assert.deepEqual(spy.consumed, []);
    }),
    { numRuns: 1200, timeLimitMs: 3000 },
  );
});

test('property: a random change to the signed request (method, path, query, headers, body) never verifies', async () => {
  const policy = compiled();
  const base = makeRequest({ method: 'POST', path: '/v1/orders', query: 'x=1&y=%C3%A9', body: '{"a":1}', headers: { 'content-type': 'application/json' }, nonce: 'nonce-property-2' });
  const newVerifier = (): { v: Verifier; spy: SpyReplayStore } => {
    const spy = new SpyReplayStore();
    return { v: new Verifier({ policy: new StaticPolicyProvider(policy, T0), replayStore: spy, clock: new ManualClock(T0 + 1000) }), spy };
  };
  assert.equal((await newVerifier().v.verify(base)).allowed, true);
  const change = fc.oneof(
    fc.record({ f: fc.constant('method' as const), v: fc.constantFrom('GET', 'PUT', 'post', 'POST ', 'PATCH') }),
    fc.record({ f: fc.constant('path' as const), v: fc.constantFrom('/v1/orders/', '/v1/Orders', '/v1/orders?', '/v1/%6Frders', '/v1//orders', '/v1/orders/.', '/v1/./orders') }),
    fc.record({ f: fc.constant('query' as const), v: fc.constantFrom('x=1', 'x=1&y=%C3%A9&z', 'x=2&y=%C3%A9', 'x=1&y=%c3%a9&x=1', 'x=1&y=\u00e9&', 'x=1;y=%C3%A9', 'x=1&y=%C3%A9%', 'y=%C3%A9') }),
    fc.record({ f: fc.constant('body' as const), v: fc.constantFrom('{"a":2}', '{"a":1} ', '', '{"a":1,"a":1}') }),
    fc.record({ f: fc.constant('header' as const), v: fc.constantFrom('content-type', 'x-trustplane-nonce', 'x-trustplane-transcript-sha256', 'x-trustplane-body-sha256', 'x-trustplane-proof', 'content-encoding', 'authorization'), value: fc.constantFrom('text/plain', 'application/JSON', '', 'gzip', 'x'.repeat(86)) }),
    fc.record({ f: fc.constant('repeat' as const), v: fc.constantFrom('content-type', 'x-trustplane-nonce', 'x-trustplane-proof', 'authorization', 'content-encoding') }),
  );
  await tally.checkAsync(
    fc.asyncProperty(change, async (c) => {
      const headers: Record<string, string | string[]> = { ...base.headers };
      const req: { -readonly [K in keyof VerifyRequest]: VerifyRequest[K] } = { ...base, headers };
      if (c.f === 'method') req.method = c.v;
      else if (c.f === 'path') req.path = c.v;
      else if (c.f === 'query') req.query = c.v;
      else if (c.f === 'body') req.body = Buffer.from(c.v);
      else if (c.f === 'header') {
        // An empty Content-Encoding means identity, exactly as an absent one (SPEC §1 line 8).
        fc.pre(headers[c.v] !== c.value && !(c.v === 'content-encoding' && c.value === ''));
        headers[c.v] = c.value;
      } else headers[c.v] = [String(headers[c.v] ?? 'x'), String(headers[c.v] ?? 'x')];
      const { v, spy } = newVerifier();
      const d = await v.verify(req);
      assert.equal(d.allowed, false, `changed request verified: ${JSON.stringify(c)}`);
      assert.notEqual(d.reason, 'internal_error', d.allowed ? '' : d.detail);
      assert.deepEqual(spy.consumed, []);
    }),
    { numRuns: 300, timeLimitMs: 2000, minRuns: 20 },
  );
});

// ---------------------------------------------------------------------------------------------
// query normalization (transcript.ts, SPEC §1)

/**
 * An independent oracle for `rfc3986-sort-keys-values`, from the platform's URI functions:
 * decodeURIComponent refuses malformed escapes and invalid UTF-8 (overlongs, surrogates),
 * encodeURIComponent refuses lone surrogates; what it leaves unencoded beyond RFC 3986's
 * unreserved set (`!'()*`) is encoded here. '+' is data.
 */
/** The normalized query, or the sentinel `'error'` when it must be refused. */
function oracle(raw: string): string {
  let q = pyTrim(raw);
  if (q.startsWith('?')) q = q.slice(1);
  if (q === '') return '';
  const canon = (c: string): string => encodeURIComponent(decodeURIComponent(c)).replace(/[!'()*]/g, (m) => `%${m.charCodeAt(0).toString(16).toUpperCase()}`);
  try {
    const pairs = q.split('&').map((part) => {
      const eq = part.indexOf('=');
      return eq === -1 ? [canon(part), ''] : [canon(part.slice(0, eq)), canon(part.slice(eq + 1))];
    });
    pairs.sort(([ak, av], [bk, bv]) => (ak! < bk! ? -1 : ak! > bk! ? 1 : av! < bv! ? -1 : av! > bv! ? 1 : 0));
    return pairs.map(([k, v]) => `${k!}=${v!}`).join('&');
  } catch (e) {
    assert.ok(e instanceof URIError, String(e));
    return 'error';
  }
}

const queryUnit = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'b', 'B', 'z', '0', '9', '-', '.', '_', '~', '=', '&', '&', '+', ';', '?', ' ', '/', ':', '@', '!', '*', "'", '(', ')', '#', '[', ']') },
  { weight: 4, arbitrary: fc.constantFrom('%20', '%2B', '%2b', '%3D', '%26', '%7E', '%7e', '%41', '%61', '%25', '%C3%A9', '%c3%a9', '%E2%82%AC', '%F0%9F%98%80', '%00', '%FF', '%C0%AF', '%ED%A0%80', '%F4%90%80%80', '%', '%4', '%G1', '%%41') },
  { weight: 2, arbitrary: fc.constantFrom('é', '€', '😀', '\u0085', '\u00a0', '\u3000', '\t', '\n') },
  { weight: 1, arbitrary: anyUnit },
);
const rawQuery = text(queryUnit, 24);

function normalized(q: string): string {
  try {
    return normalizeQuery(q);
  } catch (e) {
    expectFormatError(e, ['invalid_query_percent_encoding', 'invalid_query_utf8'], q);
    return 'error';
  }
}

test('property: query normalization is a canonical string or a query error, and equals an independent oracle', () => {
  tally.check(
    fc.property(rawQuery, (q) => {
      const n = normalized(q);
      assert.equal(n, oracle(q), JSON.stringify(q));
      if (n !== 'error') assert.match(n, /^(?:[A-Za-z0-9\-._~%]*=[A-Za-z0-9\-._~%]*(?:&[A-Za-z0-9\-._~%]*=[A-Za-z0-9\-._~%]*)*)?$/);
    }),
    { numRuns: 5000 },
  );
});

test('property: query normalization is idempotent and insensitive to the order of its parts (SPEC §1)', () => {
  tally.check(
    fc.property(
      rawQuery.map((q) => q.replace(/^[?\s]+/, '')),
      fc.nat(),
      (q, seed) => {
        const n = normalized(q);
        const parts = q.split('&');
        // A deterministic shuffle of the parts from the generated seed.
        const shuffled = parts.map((p, i) => ({ p, k: (seed * 2654435761 + i * 40503) % 1000003 })).sort((a, b) => a.k - b.k).map((x) => x.p);
        // Order-insensitive. The whole query is trimmed and loses one leading '?' first, so a part
        // with surrounding whitespace or a leading '?' normalizes differently at either end.
        if (parts.every((p) => pyTrim(p) === p && !p.startsWith('?'))) assert.equal(normalized(shuffled.join('&')), n, JSON.stringify([q, shuffled]));
        if (n !== 'error') assert.equal(normalizeQuery(n), n, JSON.stringify(q));
      },
    ),
    { numRuns: 4000 },
  );
});

test('property: every re-spelling of the vendored ambiguous-query vector normalizes to its vector value', () => {
  const v = readVector('v1/transcript-v1.ambiguous-query-headers.json') as { raw_request: { query: string }; transcript: { query_normalization: { normalized: string; sha256: string } } };
  const expected = v.transcript.query_normalization.normalized;
  assert.equal(normalizeQuery(v.raw_request.query), expected);
  assert.equal(sha256Hex(expected), v.transcript.query_normalization.sha256);
  const parts = v.raw_request.query.split('&');
  /** Percent-encode some unreserved characters (either hex case), lower-case existing escapes. */
  const respell = (part: string, mask: number): string =>
    (part.match(/%[0-9A-F]{2}|[^%]/g) ?? [])
      .map((c, i) => {
        if (c.length === 3) return mask & 1 ? c.toLowerCase() : c;
        if (!/[A-Za-z0-9\-._~]/.test(c) || ((mask >> (i % 20)) & 1) === 0) return c;
        const hex = c.charCodeAt(0).toString(16);
        return `%${mask & 2 ? hex.toUpperCase() : hex}`;
      })
      .join('');
  tally.check(
    fc.property(fc.shuffledSubarray(parts, { minLength: parts.length, maxLength: parts.length }), fc.array(fc.nat(), { minLength: parts.length, maxLength: parts.length }), fc.constantFrom('', '?', ' ', ' ?', '\t'), (order, masks, lead) => {
      const q = lead + order.map((p, i) => respell(p, masks[i]!)).join('&');
      assert.equal(normalizeQuery(q), expected, q);
    }),
    { numRuns: 1500 },
  );
});

// ---------------------------------------------------------------------------------------------
// header selection (transcript.ts buildTranscript, SPEC §1 lines 13–14)

const HEADER_NAMES = ['content-type', 'x-trustplane-nonce', 'x-tenant', 'x_tenant', 'accept', '__proto__', 'constructor', 'x-a'];
const headerValue = text(fc.oneof({ weight: 4, arbitrary: fc.constantFrom('a', 'b', 'json', '/', ',', ' ', '\t', '\u0085', '\u00a0', '\u3000') }, { weight: 1, arbitrary: anyUnit }), 8);
const spellName = (name: string, mask: number): string =>
  (mask & 1 ? ' ' : '') + [...name].map((c, i) => ((mask >> (i % 16)) & 2 ? c.toUpperCase() : c)).join('') + (mask & 4 ? '\t' : '');

function transcriptOf(headers: readonly HeaderEntry[] | ((n: string) => string | undefined) | undefined, allowList: readonly string[], hashes?: Record<string, string>): string {
  const input: TranscriptInput = {
    method: 'GET',
    scheme: 'https',
    authority: 'orders.example',
    path: '/v1/orders/search',
    audience: 'orders-api',
    routeId: 'orders.search',
    headerAllowList: allowList,
    passportJti: 'jti-1',
    nonce: 'nonce-1',
    issuedAt: 1_740_000_000,
    keyBinding: 'software',
    ...(headers !== undefined ? { headers } : {}),
    ...(hashes !== undefined ? { headerHashes: hashes } : {}),
  };
  try {
    return buildTranscript(input).sha256;
  } catch (e) {
    expectFormatError(e, ['missing_signed_header'], allowList);
    return 'missing';
  }
}

test('property: header selection takes the first value per name, case- and space-insensitively, and nothing else', () => {
  const entries = fc.array(fc.record({ name: fc.constantFrom(...HEADER_NAMES), value: headerValue, mask: fc.nat() }), { maxLength: 8 });
  tally.check(
    fc.property(entries, fc.subarray(HEADER_NAMES), fc.array(fc.record({ name: fc.constantFrom(...HEADER_NAMES), value: headerValue }), { maxLength: 3 }), fc.nat(), (list, allow, extra, spell) => {
      const plain: HeaderEntry[] = list.map((e) => ({ name: e.name, value: e.value }));
      const base = transcriptOf(plain, allow);
      // The same headers with names re-spelled (case, surrounding whitespace) select the same.
      assert.equal(transcriptOf(list.map((e) => ({ name: spellName(e.name, e.mask), value: e.value })), allow), base);
      // The lookup-function form and the value-hash form (IPC v1) agree with the list form.
      const first = new Map<string, string>();
      for (const e of plain) if (!first.has(e.name)) first.set(e.name, e.value);
      assert.equal(transcriptOf((n) => first.get(n), allow), base);
      const hashes = Object.create(null) as Record<string, string>;
      for (const [n, v] of first) hashes[n] = sha256Hex(pyTrim(v));
      assert.equal(transcriptOf(undefined, allow, hashes), base);
      // Later copies of any name, and headers outside the allow-list, change nothing.
      const appended = [...plain, ...extra.filter((e) => first.has(e.name) || !allow.includes(e.name))];
      assert.equal(transcriptOf(appended, allow), base);
      // A name on the allow-list but not on the request is refused, never hashed as empty.
      const missing = allow.some((n) => !first.has(n));
      assert.equal(base === 'missing', missing);
      // Changing a selected value beyond surrounding whitespace changes the transcript.
      const signed = allow.filter((n) => first.has(n));
      if (signed.length > 0 && !missing) {
        const n = signed[spell % signed.length]!;
        const changed = plain.map((e) => (e.name === n ? { name: e.name, value: `${e.value}!` } : e));
        const idx = changed.findIndex((e) => e.name === n);
        for (let i = idx + 1; i < changed.length; i++) if (changed[i]!.name === n) changed[i] = plain[i]!;
        assert.notEqual(transcriptOf(changed, allow), base);
      }
    }),
    { numRuns: 1500 },
  );
});

test('property: counts (every property in this file ran)', (t) => {
  t.diagnostic(tally.summary());
  assert.equal(tally.properties, 14);
  assert.ok(tally.runs > 0);
});
