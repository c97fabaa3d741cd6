/**
 * Broker IPC v1 (SPEC §6): the wire shapes and a strict parser for the one JSON line a client
 * sends. Everything in a request is untrusted: the line is size-capped, parsed with the strict
 * JSON parser (duplicate keys, lone surrogates, unsafe integers refused), and every field is
 * checked for type, size and internal consistency (the query digest matches the raw query, the
 * allow-list is canonical, the nonce header hashes to the nonce) before any key is touched.
 */
import {
  FormatError,
  canonicalAllowList,
  isJsonObject,
  isSha256Hex,
  isSignerClass,
  normalizeQuery,
  parseJsonStrict,
  sha256Hex,
  type JsonObject,
  type JsonValue,
  type SignerClass,
} from '@trustplane/core';

export const IPC_VERSION = 'trustplane-broker-ipc-v1';
export const IPC_KIND = 'broker_ipc_exchange';
export const IPC_PROTOCOL = 'local-json-ipc';
export const IPC_OPERATION = 'issue_request_bound_passport';
/** One request line, newline excluded (SPEC §6). */
export const MAX_IPC_LINE_BYTES = 1024 * 1024;
export const PASSPORT_FORMAT = 'compact-jws';
export const STAMP_FORMAT = 'ed25519-transcript-v1';

const MAX_FIELD_CHARS = 8192;
const MAX_HEADERS = 64;
const MAX_CTX_FIELDS = 32;
const MAX_CTX_VALUE_CHARS = 1024;

export interface IpcHttp {
  method: string;
  scheme: string;
  authority: string;
  path: string;
  content_encoding: string;
  query: { raw: string; normalization: string; normalized: string; sha256: string };
  headers: { allow_list: string[]; selected: { name: string; value_sha256: string }[] };
  audience: string;
  route_id: string;
  body_sha256: string;
  nonce: string;
}

export interface IpcKeyBinding {
  intent: string;
  requested_key_binding: SignerClass;
  acceptable_key_bindings: SignerClass[];
  allow_software_fallback: boolean;
}

export interface IpcRequest {
  request_id: string;
  protocol: typeof IPC_PROTOCOL;
  operation: typeof IPC_OPERATION;
  http: IpcHttp;
  ctx: { selected_fields: string[]; values: Record<string, string> };
  key_binding: IpcKeyBinding;
}

export interface IpcEnvelope {
  version: typeof IPC_VERSION;
  kind: typeof IPC_KIND;
  request: IpcRequest;
}

export interface IpcArtifacts {
  passport: { format: string; value: string; jti: string };
  stamp: { format: string; value: string; transcript_sha256: string };
}

export interface IpcError {
  code: string;
  message: string;
  retryable: boolean;
  details: Record<string, string | number | boolean>;
}

export interface IpcResponse {
  request_id: string;
  accepted: boolean;
  status: 'allow' | 'deny';
  reason_code: string;
  issued_at: number;
  expires_at: number;
  artifacts: IpcArtifacts | null;
  error: IpcError | null;
}

/** A request that could not be parsed; `requestId` is set when the line named one. */
export class IpcRequestError extends Error {
  constructor(
    readonly detail: string,
    readonly requestId: string,
  ) {
    super(detail);
    this.name = 'IpcRequestError';
  }
}

/** An RFC 9110 token in lower case (canonical header names). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** Field paths name caller-chosen keys: at most this much of one goes into an error (and audit). */
const MAX_PATH_CHARS = 200;

function bad(where: string, what: string, requestId: string): never {
  const path = where.length > MAX_PATH_CHARS ? `${where.slice(0, MAX_PATH_CHARS)}…` : where;
  throw new IpcRequestError(`${path}: ${what}`, requestId);
}

type Obj = JsonObject;

class Reader {
  constructor(readonly requestId: string) {}

  obj(parent: Obj, key: string, where: string): Obj {
    const v = parent[key];
    if (!isJsonObject(v)) bad(`${where}.${key}`, 'must be an object', this.requestId);
    return v;
  }

  str(parent: Obj, key: string, where: string, opts: { allowEmpty?: boolean; max?: number } = {}): string {
    const v = parent[key];
    if (typeof v !== 'string') bad(`${where}.${key}`, 'must be a string', this.requestId);
    if (v === '' && opts.allowEmpty !== true) bad(`${where}.${key}`, 'must not be empty', this.requestId);
    if (v.length > (opts.max ?? MAX_FIELD_CHARS)) bad(`${where}.${key}`, `longer than ${opts.max ?? MAX_FIELD_CHARS} characters`, this.requestId);
    if (v.includes('\n')) bad(`${where}.${key}`, 'contains a line feed', this.requestId);
    return v;
  }

  exact(parent: Obj, key: string, where: string, expected: string): void {
    if (parent[key] !== expected) bad(`${where}.${key}`, `must be ${JSON.stringify(expected)}`, this.requestId);
  }

  hex(parent: Obj, key: string, where: string): string {
    const v = this.str(parent, key, where, { max: 64 });
    if (!isSha256Hex(v)) bad(`${where}.${key}`, 'must be 64 lower-case hex characters', this.requestId);
    return v;
  }

  arr(parent: Obj, key: string, where: string, max: number): JsonValue[] {
    const v = parent[key];
    if (!Array.isArray(v)) bad(`${where}.${key}`, 'must be an array', this.requestId);
    if (v.length > max) bad(`${where}.${key}`, `more than ${max} entries`, this.requestId);
    return v;
  }

  signerClass(v: unknown, where: string): SignerClass {
    if (!isSignerClass(v)) bad(where, 'must be one of software, remote_kms, hardware_local, attested_workload', this.requestId);
    return v;
  }

  noExtra(o: Obj, allowed: readonly string[], where: string): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(`${where}.${k}`, 'unknown field', this.requestId);
  }
}

/**
 * Parse one request line (without its newline). Throws IpcRequestError with a field path and
 * the request_id when one could be read.
 */
export function parseIpcLine(line: string): IpcEnvelope {
  if (Buffer.byteLength(line, 'utf8') > MAX_IPC_LINE_BYTES) throw new IpcRequestError(`the request line exceeds ${MAX_IPC_LINE_BYTES} bytes`, '');
  let doc: JsonValue;
  try {
    doc = parseJsonStrict(line);
  } catch (err) {
    throw new IpcRequestError(`not valid JSON: ${err instanceof FormatError ? err.message : 'parse error'}`, '');
  }
  if (!isJsonObject(doc)) throw new IpcRequestError('the request line must be a JSON object', '');
  const maybeRequest = doc['request'];
  const rid = isJsonObject(maybeRequest) && typeof maybeRequest['request_id'] === 'string' && maybeRequest['request_id'].length <= 256 ? maybeRequest['request_id'] : '';
  const r = new Reader(rid);
  r.noExtra(doc, ['version', 'kind', 'request'], '$');
  r.exact(doc, 'version', '$', IPC_VERSION);
  r.exact(doc, 'kind', '$', IPC_KIND);
  const req = r.obj(doc, 'request', '$');
  const w = '$.request';
  r.noExtra(req, ['request_id', 'protocol', 'operation', 'http', 'ctx', 'key_binding'], w);
  const requestId = r.str(req, 'request_id', w, { max: 256 });
  r.exact(req, 'protocol', w, IPC_PROTOCOL);
  r.exact(req, 'operation', w, IPC_OPERATION);

  const h = r.obj(req, 'http', w);
  const hw = `${w}.http`;
  r.noExtra(h, ['method', 'scheme', 'authority', 'path', 'content_encoding', 'query', 'headers', 'audience', 'route_id', 'body_sha256', 'nonce'], hw);
  const q = r.obj(h, 'query', hw);
  const qw = `${hw}.query`;
  r.noExtra(q, ['raw', 'normalization', 'normalized', 'sha256'], qw);
  const raw = r.str(q, 'raw', qw, { allowEmpty: true });
  r.exact(q, 'normalization', qw, 'rfc3986-sort-keys-values');
  const normalized = r.str(q, 'normalized', qw, { allowEmpty: true, max: 3 * MAX_FIELD_CHARS });
  const querySha = r.hex(q, 'sha256', qw);
  let ownNormalized: string;
  try {
    ownNormalized = normalizeQuery(raw);
  } catch (err) {
    bad(`${qw}.raw`, err instanceof FormatError ? err.message : 'cannot be normalized', requestId);
  }
  // The broker signs what it computes; a client whose own view differs is refused, not corrected.
  if (ownNormalized !== normalized) bad(`${qw}.normalized`, 'does not match the normalization of query.raw', requestId);
  if (sha256Hex(normalized) !== querySha) bad(`${qw}.sha256`, 'is not the SHA-256 of query.normalized', requestId);

  const hd = r.obj(h, 'headers', hw);
  const hdw = `${hw}.headers`;
  r.noExtra(hd, ['allow_list', 'selected'], hdw);
  const allowList = r.arr(hd, 'allow_list', hdw, MAX_HEADERS).map((n, i) => {
    if (typeof n !== 'string' || n === '' || n.length > 256) bad(`${hdw}.allow_list[${i}]`, 'must be a non-empty header name', requestId);
    // A header name is an RFC 9110 token: a `,`, `:` or `=` in one would make transcript lines
    // 13–14 (`name:digest,name:digest`) ambiguous.
    if (!HEADER_NAME.test(n)) bad(`${hdw}.allow_list[${i}]`, 'must be a header name (an RFC 9110 token)', requestId);
    return n;
  });
  const canonical = canonicalAllowList(allowList);
  if (canonical.length !== allowList.length || canonical.some((n, i) => n !== allowList[i])) {
    bad(`${hdw}.allow_list`, 'must be canonical: trimmed, lower-case, unique, sorted', requestId);
  }
  const selected = r.arr(hd, 'selected', hdw, MAX_HEADERS).map((s, i) => {
    const sw = `${hdw}.selected[${i}]`;
    if (!isJsonObject(s)) bad(sw, 'must be an object', requestId);
    r.noExtra(s, ['name', 'value_sha256'], sw);
    return { name: r.str(s, 'name', sw, { max: 256 }), value_sha256: r.hex(s, 'value_sha256', sw) };
  });
  const selectedNames = selected.map((s) => s.name);
  if (selectedNames.length !== allowList.length || selectedNames.some((n, i) => n !== allowList[i])) {
    bad(`${hdw}.selected`, 'must name exactly the allow-list headers, in allow-list order', requestId);
  }
  const nonce = r.str(h, 'nonce', hw, { max: 256 });
  const nonceHeader = selected.find((s) => s.name === 'x-trustplane-nonce');
  if (nonceHeader !== undefined && nonceHeader.value_sha256 !== sha256Hex(nonce)) {
    bad(`${hdw}.selected`, 'x-trustplane-nonce must hash to http.nonce', requestId);
  }

  const http: IpcHttp = {
    method: r.str(h, 'method', hw, { max: 32 }),
    scheme: r.str(h, 'scheme', hw, { max: 32 }),
    authority: r.str(h, 'authority', hw, { max: 512 }),
    path: r.str(h, 'path', hw),
    content_encoding: r.str(h, 'content_encoding', hw, { allowEmpty: true, max: 256 }),
    query: { raw, normalization: 'rfc3986-sort-keys-values', normalized, sha256: querySha },
    headers: { allow_list: allowList, selected },
    audience: r.str(h, 'audience', hw, { max: 512 }),
    route_id: r.str(h, 'route_id', hw, { max: 256 }),
    body_sha256: r.hex(h, 'body_sha256', hw),
    nonce,
  };

  const c = r.obj(req, 'ctx', w);
  const cw = `${w}.ctx`;
  r.noExtra(c, ['selected_fields', 'values'], cw);
  const fields = r.arr(c, 'selected_fields', cw, MAX_CTX_FIELDS).map((f, i) => {
    if (typeof f !== 'string' || !/^[a-z][a-z0-9_]{0,63}$/.test(f)) bad(`${cw}.selected_fields[${i}]`, 'must be a snake_case field name', requestId);
    return f;
  });
  if (new Set(fields).size !== fields.length) bad(`${cw}.selected_fields`, 'has duplicates', requestId);
  const vals = r.obj(c, 'values', cw);
  const values: Record<string, string> = {};
  for (const k of Object.keys(vals)) {
    if (!fields.includes(k)) bad(`${cw}.values.${k}`, 'is not in selected_fields', requestId);
  }
  for (const f of fields) values[f] = r.str(vals, f, `${cw}.values`, { max: MAX_CTX_VALUE_CHARS });

  const k = r.obj(req, 'key_binding', w);
  const kw = `${w}.key_binding`;
  r.noExtra(k, ['intent', 'requested_key_binding', 'acceptable_key_bindings', 'allow_software_fallback'], kw);
  r.exact(k, 'intent', kw, 'route_policy_minimum');
  const requested = r.signerClass(k['requested_key_binding'], `${kw}.requested_key_binding`);
  const acceptable = r.arr(k, 'acceptable_key_bindings', kw, 4).map((v, i) => r.signerClass(v, `${kw}.acceptable_key_bindings[${i}]`));
  const fallback = k['allow_software_fallback'];
  if (typeof fallback !== 'boolean') bad(`${kw}.allow_software_fallback`, 'must be a boolean', requestId);

  return {
    version: IPC_VERSION,
    kind: IPC_KIND,
    request: {
      request_id: requestId,
      protocol: IPC_PROTOCOL,
      operation: IPC_OPERATION,
      http,
      ctx: { selected_fields: fields, values },
      key_binding: { intent: 'route_policy_minimum', requested_key_binding: requested, acceptable_key_bindings: acceptable, allow_software_fallback: fallback },
    },
  };
}

/** A deny response (SPEC §6): no artifacts, times zero. */
export function denyResponse(requestId: string, code: string, message: string, retryable: boolean, details: IpcError['details'] = {}): IpcResponse {
  return {
    request_id: requestId,
    accepted: false,
    status: 'deny',
    reason_code: code,
    issued_at: 0,
    expires_at: 0,
    artifacts: null,
    error: { code, message, retryable, details },
  };
}
