import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalizeJson, canonicalJsonBytes, parseJsonStrict } from '../src/index.js';

const cp = (n: number): string => String.fromCodePoint(n);

test('JCS: RFC 8785 §3.2.4 example (numbers, escaping, literals)', () => {
  const input = String.raw`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`;
  const expected = `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"${cp(0x20ac)}$\\u000f\\nA'B\\"\\\\\\\\\\"/"}`;
  assert.equal(canonicalizeJson(parseJsonStrict(input)), expected);
  // The RFC's UTF-8 rendering of the same text begins 7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c.
  assert.equal(canonicalJsonBytes(parseJsonStrict(input)).subarray(0, 17).toString('hex'), '7b226c69746572616c73223a5b6e756c6c');
  // The Euro sign is emitted as UTF-8 e2 82 ac, not escaped.
  assert.ok(canonicalJsonBytes(parseJsonStrict(input)).includes(Buffer.from('e282ac24', 'hex')));
});

test('JCS: RFC 8785 §3.2.3 sorting by UTF-16 code units', () => {
  const input = String.raw`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`;
  const expected =
    `{"\\r":"Carriage Return","1":"One","${cp(0x80)}":"Control","${cp(0xf6)}":"Latin Small Letter O With Diaeresis",` +
    `"${cp(0x20ac)}":"Euro Sign","${cp(0x1f600)}":"Emoji: Grinning Face","${cp(0xfb33)}":"Hebrew Letter Dalet With Dagesh"}`;
  assert.equal(canonicalizeJson(parseJsonStrict(input)), expected);
});

test('JCS: the reference implementation test data (structures, weird, french)', () => {
  const cases: [string, string][] = [
    [
      '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
      '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ],
    [
      String.raw`{"\u20ac":"Euro Sign","1":"One","\u0080":"Control\u007f","\ud83d\ude02":"Smiley","\u00f6":"Latin Small Letter O With Diaeresis","\ufb33":"Hebrew Letter Dalet With Dagesh","</script>":"Browser Challenge"}`,
      `{"1":"One","</script>":"Browser Challenge","${cp(0x80)}":"Control${cp(0x7f)}","${cp(0xf6)}":"Latin Small Letter O With Diaeresis","${cp(0x20ac)}":"Euro Sign","${cp(0x1f602)}":"Smiley","${cp(0xfb33)}":"Hebrew Letter Dalet With Dagesh"}`,
    ],
    [
      '{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}',
      '{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}',
    ],
  ];
  for (const [input, expected] of cases) assert.equal(canonicalizeJson(parseJsonStrict(input)), expected);
});

test('JCS: RFC 8785 Appendix B number serialization', () => {
  const numbers: [string, string][] = [
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ];
  for (const [bits, expected] of numbers) {
    const n = Buffer.from(bits, 'hex').readDoubleBE(0);
    assert.equal(canonicalizeJson(n), expected, bits);
  }
  for (const bits of ['7fffffffffffffff', '7ff0000000000000', 'fff0000000000000']) {
    assert.throws(() => canonicalizeJson(Buffer.from(bits, 'hex').readDoubleBE(0)), TypeError, bits);
  }
});

test('JCS: minimal escaping: only ", \\ and controls; U+2028, DEL and / stay literal', () => {
  assert.equal(canonicalizeJson('\b\t\n\f\r\u0000\u001f"\\/\u2028\u007f'), '"\\b\\t\\n\\f\\r\\u0000\\u001f\\"\\\\/\u2028\u007f"');
});

test('JCS: what is not I-JSON is a TypeError', () => {
  for (const bad of [Number.NaN, Infinity, '\ud800', 'a\udc00b', 10n, () => 1, Symbol('x'), new Date(0), [undefined], new Map()]) {
    assert.throws(() => canonicalizeJson(bad), TypeError, String(typeof bad));
  }
  // An absent optional property (undefined) is left out, as JSON.stringify does.
  assert.equal(canonicalizeJson({ b: undefined, a: 1 }), '{"a":1}');
  // A data property named __proto__ is canonicalized like any other.
  assert.equal(canonicalizeJson(parseJsonStrict('{"__proto__":1,"a":2}')), '{"__proto__":1,"a":2}');
});

test('JCS (property): valid JSON that round-trips, independent of member order, idempotent', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
      const text = canonicalizeJson(value);
      const back = JSON.parse(text) as unknown;
      assert.equal(canonicalizeJson(back), text);
      // Re-inserting the members in reverse order changes nothing.
      const reversed = JSON.parse(text, (_k, v: unknown) =>
        typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v,
      ) as unknown;
      assert.equal(canonicalizeJson(reversed), text);
      assert.ok(!/[\n ]/.test(text.replace(/"(?:[^"\\]|\\.)*"/g, '')), 'no whitespace outside strings');
    }),
    { numRuns: 300 },
  );
});
