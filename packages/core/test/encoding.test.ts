import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeBase64url, encodeBase64url, parseJsonStrict, parseJsonBytes, FormatError } from '../src/index.js';
import { parseJsonStrictReference } from '../src/json.js';

function hasUnsafeInteger(v: unknown): boolean {
  if (typeof v === 'number') return Number.isInteger(v) && !Number.isSafeInteger(v) && !/e/.test(String(v));
  if (Array.isArray(v)) return v.some(hasUnsafeInteger);
  if (v !== null && typeof v === 'object') return Object.values(v).some(hasUnsafeInteger);
  return false;
}

const isCode = (code: string) => (e: unknown) => e instanceof FormatError && e.code === code;

test('base64url: strict alphabet, no padding, must round-trip, capped before decoding', () => {
  assert.deepEqual(decodeBase64url('AQID', 10), Buffer.from([1, 2, 3]));
  assert.deepEqual(decodeBase64url('', 10), Buffer.alloc(0));
  assert.deepEqual(decodeBase64url('-_8', 10), Buffer.from([0xfb, 0xff]));
  for (const bad of ['AQID=', 'AQ==', '+/8', 'AQ ID', 'AQ\nID', 'A', 'AQIDB', 'AR', 'AQJ', '€€']) {
    assert.throws(() => decodeBase64url(bad, 100), isCode('invalid_base64url'), JSON.stringify(bad));
  }
  // 'AR' decodes to 0x01 with non-zero trailing bits: Buffer.from accepts it, we do not.
  assert.deepEqual(Buffer.from('AR', 'base64url'), Buffer.from([1]));
  assert.throws(() => decodeBase64url('A'.repeat(12), 8), isCode('invalid_base64url'));
});

test('property: base64url round-trips every byte string and rejects every non-canonical text', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      const text = encodeBase64url(bytes);
      assert.deepEqual(decodeBase64url(text, 200), Buffer.from(bytes));
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), (s) => {
      try {
        const b = decodeBase64url(s, 200);
        assert.equal(encodeBase64url(b), s);
      } catch (e) {
        assert.ok(e instanceof FormatError);
      }
    }),
    { numRuns: 2000 },
  );
});

test('strict JSON: duplicate keys, unsafe integers, lone surrogates, trailing data and deep nesting are refused', () => {
  const bad = [
    '{"a":1,"a":2}',
    '{"a":{"b":1,"b":1}}',
    '{"iat":9007199254740993}',
    '{"iat":-9007199254740992}',
    '"\\ud800"',
    '"\\udc00x"',
    '{"a":1}x',
    '{"a":1,}',
    '[1,]',
    "{'a':1}",
    '{"a":01}',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":+1}',
    '{"a":NaN}',
    '{"a":1e999}',
    '"tab\there"',
    '',
    ' ',
    '\ufeff{}',
    '{"a":"\\x41"}',
    '[' .repeat(40) + ']'.repeat(40),
    '{"a":'.repeat(33) + '1' + '}'.repeat(33),
    '{"a":"x:y","a":"z"}',
    '{"a:":1,"b":{"c":"::","c":":"}}',
    '"\ud800"',
    '{"k":"x\udc00"}',
    '[9007199254740992]',
  ];
  for (const text of bad) assert.throws(() => parseJsonStrict(text), isCode('invalid_json'), JSON.stringify(text));
});

test('strict JSON: accepts RFC 8259 documents exactly like JSON.parse does', () => {
  const good = ['{}', '[]', '{"a":[1,2.5,-0.5e3,true,false,null,"x"]}', '"\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/"', ' { "a" : 1 } ', '9007199254740991', '1.5e300', '{"__proto__":{"x":1}}'];
  for (const text of good) assert.deepEqual(parseJsonStrict(text), JSON.parse(text), text);
  // Nesting exactly at the cap is fine (the fast path and the strict parser agree on the count).
  assert.deepEqual(parseJsonStrict('{"a":'.repeat(32) + '1' + '}'.repeat(32)), JSON.parse('{"a":'.repeat(32) + '1' + '}'.repeat(32)));
  assert.deepEqual(parseJsonStrict('['.repeat(32) + ']'.repeat(32)), JSON.parse('['.repeat(32) + ']'.repeat(32)));
  assert.deepEqual(parseJsonStrict('[9007199254740992.5, 1.0, -0]'), [9007199254740992, 1, -0]);
  const proto = parseJsonStrict('{"__proto__":{"polluted":1}}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  assert.deepEqual(Object.keys(proto), ['__proto__']);
});

test('property: the JSON.parse fast path and the strict parser alone give the same verdict and value', () => {
  const verdict = (parse: (t: string) => unknown, text: string): unknown => {
    try {
      return { value: parse(text) };
    } catch (e) {
      assert.ok(e instanceof FormatError && e.code === 'invalid_json', String(e));
      return 'invalid_json';
    }
  };
  const same = (text: string): void => assert.deepEqual(verdict(parseJsonStrict, text), verdict(parseJsonStrictReference, text), JSON.stringify(text));
  // Objects written pair by pair from a tiny key alphabet (with ':' in keys and values), so
  // repeated keys are common and nested.
  const key = fc.constantFrom('a', 'b', 'a:', ':', '__proto__', '1');
  const leaf = fc.oneof(fc.constantFrom('x', ':', 'a:b', '', '\ud800'), fc.integer(), fc.constantFrom(2 ** 53, 1e300, 0.5), fc.boolean(), fc.constant(null));
  const { tree } = fc.letrec((tie) => ({
    tree: fc.oneof({ depthSize: 'small' }, leaf.map((v) => JSON.stringify(v)), tie('obj'), tie('arr')),
    obj: fc.array(fc.tuple(key, tie('tree')), { maxLength: 4 }).map((ps) => `{${ps.map(([k, v]) => `${JSON.stringify(k)}:${v as string}`).join(',')}}`),
    arr: fc.array(tie('tree'), { maxLength: 3 }).map((vs) => `[${vs.join(',')}]`),
  }));
  fc.assert(fc.property(tree, (t) => same(t as string)), { numRuns: 3000 });
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom('{', '}', '[', ']', ':', ',', '"', 'a', '1', '-', '.', 'e', ' ', '\\', 'u', '\ud800', '\udc00'), maxLength: 24 }), same), { numRuns: 5000 });
});

test('strict JSON from bytes: size cap first, then strict UTF-8', () => {
  assert.throws(() => parseJsonBytes(Buffer.from('{"a":1}'), 3), isCode('too_large'));
  assert.throws(() => parseJsonBytes(Buffer.from([0x22, 0xff, 0x22]), 100), isCode('invalid_utf8'));
  assert.deepEqual(parseJsonBytes(Buffer.from('{"é":"€"}'), 100), { é: '€' });
});

test('property: strict JSON agrees with JSON.parse on serialized values, and never crashes on junk', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 5 }), (v) => {
      const text = JSON.stringify(v);
      // Integer literals outside the safe range are refused by design; all else must agree.
      const unsafe = hasUnsafeInteger(v);
      if (unsafe) assert.throws(() => parseJsonStrict(text), isCode('invalid_json'));
      else assert.deepEqual(parseJsonStrict(text), JSON.parse(text));
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), (s) => {
      try {
        parseJsonStrict(s);
      } catch (e) {
        assert.ok(e instanceof FormatError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
});
