/**
 * Cross-language conformance (issue 7 item 6): the TypeScript transcript-v1 / passport code of
 * @trustplane/core against the independent stdlib Python reference in conformance/python, driven
 * over its JSON-lines protocol (one process answers every case). Used by
 * packages/core/test/conformance-python.test.ts and by `npm run conformance`
 * (scripts/conformance.mjs); docs/conformance.md describes what is compared.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { buildTranscript, FormatError, issuePassport, privateKeyFromSeed, pyTrim, type HeaderEntry } from '@trustplane/core';

/** A transcript input in the Python reference's JSON shape (README "transcript input keys"). */
export interface PyTranscriptInput {
  method?: string;
  scheme?: string;
  authority?: string;
  path?: string;
  raw_query?: string;
  audience?: string;
  route_id?: string;
  content_encoding?: string;
  body_utf8?: string;
  body_b64?: string;
  body_sha256?: string;
  headers?: HeaderEntry[];
  allow_list?: string[];
  passport_jti?: string;
  nonce?: string;
  issued_at?: number;
  key_binding?: string;
}

/** `software_passport` args of the Python reference (all required). */
export interface PyPassportArgs {
  issuer: string;
  subject: string;
  audience: string;
  trust_domain: string;
  key_id: string;
  public_key_b64url: string;
  iat: number;
  ttl_seconds: number;
  jti: string;
}

export type ConformanceCase =
  | { readonly kind: 'transcript'; readonly name: string; readonly input: PyTranscriptInput; readonly expected?: { lines: string[]; sha256: string } }
  | { readonly kind: 'passport'; readonly name: string; readonly args: PyPassportArgs };

/** One side's answer, in the Python reference's response shape (minus `id`). */
export type Outcome = { ok: true; lines?: string[]; sha256?: string; signing_input?: string } | { ok: false; error: string };

export interface Difference {
  readonly case: ConformanceCase;
  readonly ts: Outcome;
  readonly python: Outcome;
  readonly why: string;
}

export interface ConformanceReport {
  readonly vectors: number;
  readonly generated: number;
  readonly transcriptCases: number;
  readonly passportCases: number;
  /** Generated cases on which both sides refused (with the same code). */
  readonly refusals: number;
  /**
   * Generated cases the TS side refuses by design while the Python reference accepts: a request
   * field (not a header name) holding a line feed, which would forge a transcript line. HTTP
   * cannot carry such a field, and the verifier fails closed on it (docs/conformance.md).
   */
  readonly stricterByDesign: number;
  readonly differences: readonly Difference[];
}

const LF_GUARDED = ['method', 'scheme', 'authority', 'path', 'audience', 'route_id', 'content_encoding', 'passport_jti', 'nonce', 'key_binding', 'body_sha256'] as const;

/**
 * TS refused `invalid_field` because a request field still holds an LF after trimming; Python
 * either built a transcript with it or refused for a check it runs earlier than TS does.
 */
function isLineFeedHardening(c: ConformanceCase, ts: Outcome): boolean {
  if (ts.ok || ts.error !== 'invalid_field' || c.kind !== 'transcript') return false;
  return LF_GUARDED.some((k) => pyTrim(c.input[k] ?? '').includes('\n'));
}

// ---------------------------------------------------------------------------------------------
// The TypeScript side
// ---------------------------------------------------------------------------------------------

function errorCode(err: unknown): string {
  if (err instanceof FormatError) return err.code;
  // issuePassport throws TypeError('missing_issuer' | 'non_canonical_issuer: …' | 'invalid_passport_ttl: …').
  if (err instanceof TypeError) return `${err.message.split(':')[0]}`;
  return `unexpected_exception:${err instanceof Error ? err.message : String(err)}`;
}

/** The TS transcript of a Python-shaped input. */
export function tsTranscript(inp: PyTranscriptInput): Outcome {
  try {
    const t = buildTranscript({
      method: inp.method ?? '',
      scheme: inp.scheme ?? '',
      authority: inp.authority ?? '',
      path: inp.path ?? '',
      rawQuery: inp.raw_query ?? '',
      audience: inp.audience ?? '',
      routeId: inp.route_id ?? '',
      contentEncoding: inp.content_encoding ?? '',
      body: inp.body_b64 !== undefined ? Buffer.from(inp.body_b64, 'base64') : (inp.body_utf8 ?? ''),
      ...(inp.body_sha256 !== undefined ? { bodySha256: inp.body_sha256 } : {}),
      headers: inp.headers ?? [],
      headerAllowList: inp.allow_list ?? [],
      passportJti: inp.passport_jti ?? '',
      nonce: inp.nonce ?? '',
      issuedAt: inp.issued_at ?? 0,
      keyBinding: inp.key_binding ?? '',
    });
    return { ok: true, lines: [...t.lines], sha256: t.sha256 };
  } catch (err) {
    return { ok: false, error: errorCode(err) };
  }
}

const passportSigningKey = privateKeyFromSeed(Buffer.alloc(32, 7));

/** header.payload (the JWS signing input) of the TS `issuePassport` for the Python args. */
export function tsSoftwarePassport(a: PyPassportArgs): Outcome {
  try {
    const p = issuePassport({
      signingKey: passportSigningKey,
      kid: a.key_id,
      issuer: a.issuer,
      subject: a.subject,
      audience: a.audience,
      trustDomain: a.trust_domain,
      ttlSeconds: a.ttl_seconds,
      now: a.iat * 1000,
      jti: a.jti,
      proofPublicKey: Buffer.from(a.public_key_b64url, 'base64url'),
    });
    return { ok: true, signing_input: p.token.split('.').slice(0, 2).join('.') };
  } catch (err) {
    return { ok: false, error: errorCode(err) };
  }
}

// ---------------------------------------------------------------------------------------------
// The Python side: ONE `python3 trustplane_ref.py` process answers every case
// ---------------------------------------------------------------------------------------------

/** Send every request line to one reference process; resolves with the responses by id. */
export async function askPython(pythonDir: string, requests: readonly Record<string, unknown>[], python = 'python3'): Promise<Map<number, Record<string, unknown>>> {
  const child = spawn(python, ['trustplane_ref.py'], { cwd: pythonDir, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const done = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  child.stdin.on('error', () => undefined); // a crash is reported through the exit code below
  child.stdin.end(requests.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const code = await done;
  if (code !== 0) throw new Error(`python reference exited ${code}: ${Buffer.concat(err).toString('utf8').slice(0, 2000)}`);
  const byId = new Map<number, Record<string, unknown>>();
  for (const line of Buffer.concat(out).toString('utf8').split('\n')) {
    if (line === '') continue;
    const resp = JSON.parse(line) as Record<string, unknown>;
    byId.set(resp['id'] as number, resp);
  }
  if (byId.size !== requests.length) throw new Error(`python reference answered ${byId.size} of ${requests.length} requests`);
  return byId;
}

function pyOutcome(resp: Record<string, unknown>): Outcome {
  if (resp['ok'] !== true) return { ok: false, error: String(resp['error']) };
  const { id: _id, ok: _ok, ...rest } = resp;
  return { ok: true, ...(rest as { lines?: string[]; sha256?: string; signing_input?: string }) };
}

export function compareOutcomes(a: Outcome, b: Outcome): string | null {
  if (a.ok !== b.ok) return a.ok ? `TS accepted, Python refused (${(b as { error: string }).error})` : `TS refused (${a.error}), Python accepted`;
  if (!a.ok || !b.ok) {
    const ea = (a as { error: string }).error;
    const eb = (b as { error: string }).error;
    return ea === eb ? null : `error codes differ: TS ${ea}, Python ${eb}`;
  }
  if (a.signing_input !== b.signing_input) return 'passport signing inputs differ';
  if (a.sha256 !== b.sha256) return 'transcript sha256 differs';
  // Compared as the LF-joined bytes: a header name may itself hold an LF (both sides accept it),
  // so splitting the text back into lines is not a faithful view of either side.
  if (a.lines?.join('\n') !== b.lines?.join('\n')) return 'transcript lines differ';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Cases: the shipped vectors and fast-check generated requests
// ---------------------------------------------------------------------------------------------

export const TRANSCRIPT_VECTOR_FILES = ['transcript-v1.json', 'transcript-v1.ambiguous-query-headers.json'] as const;

interface TranscriptVector {
  vector_id: string;
  raw_request: { query: string; body_utf8: string; headers: HeaderEntry[] };
  transcript: Record<string, unknown> & { headers: { allow_list: string[] }; issued_at: number };
  canonical: { lines: string[]; sha256: string };
}

/** The two shipped transcript-v1 vectors (conformance/vectors/v1), with their expected output. */
export function vectorCases(repoRoot: string): ConformanceCase[] {
  return TRANSCRIPT_VECTOR_FILES.map((file) => {
    const v = JSON.parse(readFileSync(path.join(repoRoot, 'conformance/vectors/v1', file), 'utf8')) as TranscriptVector;
    const t = v.transcript;
    const s = (k: string): string => t[k] as string;
    return {
      kind: 'transcript',
      name: `vector ${v.vector_id}`,
      input: {
        method: s('method'),
        scheme: s('scheme'),
        authority: s('authority'),
        path: s('path'),
        raw_query: v.raw_request.query,
        audience: s('audience'),
        route_id: s('route_id'),
        content_encoding: s('content_encoding'),
        body_utf8: v.raw_request.body_utf8,
        headers: v.raw_request.headers,
        allow_list: t.headers.allow_list,
        passport_jti: s('passport_jti'),
        nonce: s('nonce'),
        issued_at: t.issued_at,
        key_binding: s('key_binding'),
      },
      expected: { lines: v.canonical.lines, sha256: v.canonical.sha256 },
    };
  });
}

/** Characters Python's str.strip() removes (PY_STRIP_WHITESPACE), plus U+FEFF which it keeps. */
const WS = ['\t', '\n', '\u000b', '\u000c', '\r', '\u001c', '\u001f', ' ', '\u0085', '\u00a0', '\u1680', '\u2000', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff'];

/** Any Unicode scalar value except LF (see docs/conformance.md: TS refuses LF inside a field). */
const anyChar = fc
  .oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x10ffff }) },
    { weight: 1, arbitrary: fc.constantFrom(...WS.map((c) => c.codePointAt(0)!)) },
  )
  .filter((cp) => cp !== 0x0a && !(cp >= 0xd800 && cp <= 0xdfff))
  .map((cp) => String.fromCodePoint(cp));
const text = (maxLength: number): fc.Arbitrary<string> => fc.array(anyChar, { maxLength }).map((a) => a.join(''));
const ws = fc.array(fc.constantFrom(...WS), { maxLength: 3 }).map((a) => a.join(''));
/** A field value, sometimes padded with whitespace that both sides must trim the same way. */
const padded = (inner: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof({ weight: 3, arbitrary: inner }, { weight: 1, arbitrary: fc.tuple(ws, inner, ws).map(([a, b, c]) => a + b + c) });
/** Python's str.strip() (README: the set differs from JS trim). */
const PY_WS = new Set(WS.filter((c) => c !== '\ufeff'));
function pyStrip(s: string): string {
  const a = [...s];
  let i = 0;
  let j = a.length;
  while (i < j && PY_WS.has(a[i]!)) i++;
  while (j > i && PY_WS.has(a[j - 1]!)) j--;
  return a.slice(i, j).join('');
}
/** A required field: non-blank, and no LF left inside once trimmed (see `anyChar`). */
const nonBlank = (inner: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  padded(inner.filter((s) => /[!-~]/.test(s))).filter((s) => pyStrip(s) !== '' && !pyStrip(s).includes('\n'));

const QUERY_PIECES = ['%2B', '%2b', '%20', '+', ';', '=', '&', '&&', '%zz', '%ff', '%FF', '%', '%4', '%7e', '%7E', '%41', '%00', '%0A', '%C3%A9', '%c3', '%E2%82%AC', '%F0%9F%98%80', '%ED%A0%80', '%C0%AF', '%F4%90%80%80', '?', '#', '/', ' ', '~', '.', '-', '_', 'a', 'b', 'Z', '0', '9', 'é', 'ß', '日本', '😀', '\u0000', '\t'];
const BAD_QUERY_PIECES = ['%zz', '%ff', '%FF', '%', '%4', '%c3', '%ED%A0%80', '%C0%AF', '%F4%90%80%80'];
const SAFE_QUERY_PIECES = QUERY_PIECES.filter((p) => !BAD_QUERY_PIECES.includes(p));

const queryFrom = (pieces: readonly string[]): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.constantFrom('', '', '?', '??', ' ?', '? '),
      fc.array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...pieces) }, { weight: 1, arbitrary: anyChar.filter((c) => c !== '%') }), { maxLength: 24 }),
      ws,
    )
    .map(([lead, parts, tail]) => lead + parts.join('') + tail);
const trickyQuery = fc.oneof({ weight: 3, arbitrary: queryFrom(QUERY_PIECES.filter((p) => !BAD_QUERY_PIECES.includes(p))) }, { weight: 1, arbitrary: queryFrom(QUERY_PIECES) });
/** Queries that always normalize (no bad escape): used when another fault is injected, because
 * the two sides report multiple faults in a different order (docs/conformance.md). */
const safeQuery = queryFrom(SAFE_QUERY_PIECES);

const HEADER_NAMES = ['Content-Type', 'content-type', 'CONTENT-TYPE', ' X-Trace ', 'x-trace', 'X-TRACE', 'X-TrustPlane-Nonce', 'x-trustplane-nonce', 'Accept', 'x-Dup', 'X-DUP', 'x-dup', '', '  ', 'x-ü', 'X-Ü'];
const headerName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...HEADER_NAMES) }, { weight: 1, arbitrary: padded(text(12)) });
// Header values may contain LF anywhere: both sides only hash them.
const headerValue = fc.oneof({ weight: 4, arbitrary: padded(text(24)) }, { weight: 1, arbitrary: fc.constantFrom('', ' ', 'a\nb', '\n', 'application/json', 'v\r\n') });
const headers = fc.array(fc.record({ name: headerName, value: headerValue }), { maxLength: 8 });

const method = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('GET', 'get', 'Post', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'M-SEARCH', 'PROPFIND', 'brew', ' trace ', '\u0085GET\u3000', 'ǵet', 'ß', 'ıd', 'GET\u000bX', 'x\u00a0y') },
  { weight: 1, arbitrary: nonBlank(text(10)) },
);
const scheme = fc.constantFrom('https', 'HTTPS', 'http', ' Http ', 'wss', 'hTTps\u2029', 'İ', 'x-ß');
const authority = fc.oneof(
  fc.constantFrom('orders.example', 'ORDERS.Example:443', 'orders.example:8443', '[::1]:8080', 'user@Host', 'ÄBC.example', 'xn--bcher-kva.EXAMPLE'),
  nonBlank(text(20)),
);
const pathArb = fc.oneof(
  fc.constantFrom('/', '/v1/orders', '/v1/../orders/./x', '/a%2Fb', '/A%2fB?x', '/über/✓', '//double', '/trailing/ ', '*'),
  nonBlank(text(30)),
);
const field = nonBlank(text(20));
const contentEncoding = fc.oneof(fc.constantFrom('', ' ', 'identity', 'gzip', 'GZIP', ' Br ', 'x-Ü', 'deflate, gzip'), padded(text(8)));
const issuedAt = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4_000_000_000 }) }, { weight: 1, arbitrary: fc.constantFrom(1, 19, 20, 21, Number.MAX_SAFE_INTEGER) });
const body = fc.oneof(
  fc.record({ body_utf8: text(64) }),
  fc.record({ body_b64: fc.uint8Array({ maxLength: 96 }).map((b) => Buffer.from(b).toString('base64')) }),
  fc.record({ body_utf8: text(16), body_sha256: fc.oneof(fc.constantFrom('', '  ', '\t'), padded(fc.stringMatching(/^[0-9a-f]{64}$/)), nonBlank(text(10))) }),
  fc.constant({}),
);

type Fault = 'none' | 'blank' | 'issued_at' | 'missing_header';
const BLANKABLE = ['method', 'scheme', 'authority', 'path', 'audience', 'route_id', 'passport_jti', 'nonce', 'key_binding'] as const;

export const transcriptArb: fc.Arbitrary<PyTranscriptInput> = fc
  .record({
    fault: fc.constantFrom<Fault>('none', 'none', 'none', 'none', 'none', 'none', 'blank', 'issued_at', 'missing_header'),
    blankField: fc.constantFrom(...BLANKABLE),
    blankValue: fc.constantFrom('', ' ', '\u3000\t', '\u0085', '\n\n'),
    badIssuedAt: fc.constantFrom(0, -1, -20),
    method,
    scheme,
    authority,
    path: pathArb,
    trickyQuery,
    safeQuery,
    audience: field,
    route_id: field,
    content_encoding: contentEncoding,
    body,
    headers,
    allowFromHeaders: fc.array(fc.boolean(), { maxLength: 8 }),
    allowExtra: fc.array(fc.constantFrom('', ' ', 'CONTENT-TYPE', ' x-trace'), { maxLength: 2 }),
    absentName: fc.constantFrom('x-absent', 'X-Not-Sent', 'if-match'),
    passport_jti: field,
    nonce: field,
    issued_at: issuedAt,
    key_binding: fc.oneof(fc.constantFrom('software', 'hardware_local', 'workload_attested', ' tpm '), field),
  })
  .map((r) => {
    const sentNames = new Set(r.headers.map((h) => h.name.trim().toLowerCase()).filter((n) => n !== ''));
    // Allow-list: names of headers that were sent (in any case/padding), harmless blanks and
    // repeats; a name that was not sent only for the missing_signed_header fault.
    const allow = r.headers.filter((_h, i) => r.allowFromHeaders[i] === true).map((h) => h.name);
    for (const extra of r.allowExtra) if (extra.trim() === '' || sentNames.has(extra.trim().toLowerCase())) allow.push(extra);
    if (r.fault === 'missing_header') allow.push(r.absentName);
    const input: PyTranscriptInput = {
      method: r.method,
      scheme: r.scheme,
      authority: r.authority,
      path: r.path,
      raw_query: r.fault === 'none' || r.fault === 'missing_header' ? r.trickyQuery : r.safeQuery,
      audience: r.audience,
      route_id: r.route_id,
      content_encoding: r.content_encoding,
      ...r.body,
      headers: r.headers,
      allow_list: allow,
      passport_jti: r.passport_jti,
      nonce: r.nonce,
      issued_at: r.fault === 'issued_at' ? r.badIssuedAt : r.issued_at,
      key_binding: r.key_binding,
    };
    if (r.fault === 'blank') input[r.blankField] = r.blankValue;
    return input;
  });

const identity = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('https://issuer.example/software-jwks', 'svc:orders-reader', 'orders-api', 'acme.example', 'spiffe://acme.example/ns/prod/sa/orders', 'key-2025-01', 'ünïcødé ✓', '日本語', 'q"uote\\back', 'line\nfeed', 'tab\there', '\u2028sep\u2029', '😀', '<script>&amp;') },
  { weight: 2, arbitrary: text(24).filter((s) => pyTrim(s) !== '' && s === pyTrim(s)) },
  // Pass control characters and DEL too: JSON escaping must agree byte for byte.
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 0x7f }), { minLength: 1, maxLength: 12 }).map((a) => 'x' + String.fromCharCode(...a) + 'y') },
);
/** Mostly canonical; sometimes blank or padded (then both sides must refuse with the same code). */
const identityOrFault = fc.oneof({ weight: 12, arbitrary: identity }, { weight: 1, arbitrary: fc.constantFrom('', ' ', ' pad', 'pad\t', '\u0085x') });

export const passportArb: fc.Arbitrary<PyPassportArgs> = fc.record({
  issuer: identityOrFault,
  subject: identityOrFault,
  audience: identityOrFault,
  trust_domain: identityOrFault,
  key_id: identityOrFault,
  public_key_b64url: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64url')),
  iat: fc.integer({ min: 1, max: 4_000_000_000 }),
  ttl_seconds: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 86_400 }) }, { weight: 1, arbitrary: fc.constantFrom(0, -1) }),
  // Never blank: TS would draw a random jti where the reference refuses (docs/conformance.md).
  jti: fc.oneof(identity, fc.tuple(ws, identity).map(([a, b]) => a + b)),
});

export const DEFAULT_SEED = 20250219;

/** `count` generated cases (about 1 in 5 passports), reproducible from `seed`. */
export function generatedCases(count: number, seed = DEFAULT_SEED): ConformanceCase[] {
  const nPassport = Math.floor(count / 5);
  const nTranscript = count - nPassport;
  const cases: ConformanceCase[] = [];
  if (nTranscript > 0) {
    fc.sample(transcriptArb, { seed, numRuns: nTranscript }).forEach((input, i) => cases.push({ kind: 'transcript', name: `generated transcript #${i}`, input }));
  }
  if (nPassport > 0) {
    fc.sample(passportArb, { seed: seed + 1, numRuns: nPassport }).forEach((args, i) => cases.push({ kind: 'passport', name: `generated passport #${i}`, args }));
  }
  return cases;
}

/** Compare TS and Python on the vectors and `count` generated cases. */
export async function runConformance(opts: { repoRoot: string; count: number; seed?: number; python?: string }): Promise<ConformanceReport> {
  const vectors = vectorCases(opts.repoRoot);
  const generated = generatedCases(opts.count, opts.seed);
  const all = [...vectors, ...generated];
  const requests = all.map((c, id) => (c.kind === 'transcript' ? { id, op: 'transcript', input: c.input } : { id, op: 'software_passport', args: c.args }));
  const answers = await askPython(path.join(opts.repoRoot, 'conformance/python'), requests, opts.python);
  const differences: Difference[] = [];
  let refusals = 0;
  let stricterByDesign = 0;
  all.forEach((c, id) => {
    const python = pyOutcome(answers.get(id)!);
    const ts = c.kind === 'transcript' ? tsTranscript(c.input) : tsSoftwarePassport(c.args);
    let why = compareOutcomes(ts, python);
    if (why === null && c.kind === 'transcript' && c.expected !== undefined) {
      const e: Outcome = { ok: true, ...c.expected };
      why = compareOutcomes(ts, e) === null ? null : 'both sides agree but differ from the vector';
    }
    if (why !== null && id >= vectors.length && isLineFeedHardening(c, ts)) stricterByDesign++;
    else if (why !== null) differences.push({ case: c, ts, python, why });
    else if (!ts.ok && id >= vectors.length) refusals++;
  });
  return {
    vectors: vectors.length,
    generated: generated.length,
    transcriptCases: generated.filter((c) => c.kind === 'transcript').length,
    passportCases: generated.filter((c) => c.kind === 'passport').length,
    refusals,
    stricterByDesign,
    differences,
  };
}

/** `compared N generated cases + 2 vectors: D differences` */
export function summaryLine(r: ConformanceReport): string {
  return `compared ${r.generated} generated cases + ${r.vectors} vectors: ${r.differences.length} differences`;
}

/** A readable account of the first `max` differences. */
export function describeDifferences(r: ConformanceReport, max = 5): string {
  return r.differences
    .slice(0, max)
    .map((d) => `- ${d.case.name}: ${d.why}\n  case:   ${JSON.stringify(d.case.kind === 'transcript' ? d.case.input : d.case.args)}\n  ts:     ${JSON.stringify(d.ts)}\n  python: ${JSON.stringify(d.python)}`)
    .join('\n');
}
