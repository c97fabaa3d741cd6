/**
 * Caller side of broker IPC v1 (SPEC §6): describe the request, send one line over the Unix
 * socket, and turn the broker's answer into the five TrustPlane headers of SPEC §2 (plus our
 * `X-TrustPlane-Signed-Headers`). Header VALUES never leave the caller: the broker receives only
 * their SHA-256, exactly what the transcript binds. The caller holds no private key.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createConnection } from 'node:net';
import {
  HEADER_AUTHORIZATION,
  HEADER_BODY_SHA256,
  HEADER_NONCE,
  HEADER_PROOF,
  HEADER_SIGNED_HEADERS,
  HEADER_TRANSCRIPT_SHA256,
  asciiLower,
  bodySha256,
  canonicalAllowList,
  isJsonObject,
  normalizeQuery,
  parseJsonStrict,
  pyTrim,
  sha256Hex,
  type HeaderEntry,
  type SignerClass,
} from '@trustplane/core';
import { IPC_KIND, IPC_OPERATION, IPC_PROTOCOL, IPC_VERSION, MAX_IPC_LINE_BYTES, type IpcEnvelope, type IpcResponse } from './ipc.js';

export interface BrokerIssueRequest {
  method: string;
  /** Absolute URL as it will be sent. */
  url: string | URL;
  audience: string;
  routeId: string;
  /** Headers as they will be sent (wire order; the first occurrence of a name wins). */
  headers?: readonly HeaderEntry[] | Readonly<Record<string, string>>;
  body?: Uint8Array | string;
  /** Header names to sign. Default: `x-trustplane-nonce`, plus `content-type` when present. */
  signedHeaders?: readonly string[];
  /** The route's minimum signer class (default `software`). */
  requestedKeyBinding?: SignerClass;
  acceptableKeyBindings?: readonly SignerClass[];
  allowSoftwareFallback?: boolean;
  ctx?: Readonly<Record<string, string>>;
  requestId?: string;
  nonce?: string;
  /** Whole exchange timeout (default 5000 ms). */
  timeoutMs?: number;
}

export type BrokerIssueResult =
  | { accepted: true; headers: Record<string, string>; response: IpcResponse }
  | { accepted: false; response: IpcResponse };

export class BrokerClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BrokerClientError';
  }
}

function entriesOf(headers: BrokerIssueRequest['headers']): HeaderEntry[] {
  if (headers === undefined) return [];
  if (Array.isArray(headers)) return [...(headers as readonly HeaderEntry[])];
  return Object.entries(headers as Record<string, string>).map(([name, value]) => ({ name, value }));
}

/** The IPC envelope for a request (exported for tests and other transports). */
export function buildIpcEnvelope(req: BrokerIssueRequest): { envelope: IpcEnvelope; nonce: string; bodySha256: string } {
  const u = typeof req.url === 'string' ? new URL(req.url) : req.url;
  const nonce = req.nonce ?? randomBytes(16).toString('hex');
  const entries = entriesOf(req.headers).filter((e) => asciiLower(pyTrim(e.name)) !== 'x-trustplane-nonce');
  entries.push({ name: 'x-trustplane-nonce', value: nonce });
  const first = new Map<string, string>();
  for (const e of entries) {
    const n = asciiLower(pyTrim(e.name));
    if (n !== '' && !first.has(n)) first.set(n, e.value);
  }
  const allowList = canonicalAllowList(req.signedHeaders ?? ['x-trustplane-nonce', ...(first.has('content-type') ? ['content-type'] : [])]);
  const selected = allowList.map((name) => {
    const value = first.get(name);
    if (value === undefined) throw new BrokerClientError(`signed header ${name} is not among the request headers`);
    return { name, value_sha256: sha256Hex(pyTrim(value)) };
  });
  const raw = u.search.replace(/^\?/, '');
  const normalized = normalizeQuery(raw);
  const digest = bodySha256(req.body);
  const requested = req.requestedKeyBinding ?? 'software';
  const ctx = req.ctx ?? {};
  return {
    nonce,
    bodySha256: digest,
    envelope: {
      version: IPC_VERSION,
      kind: IPC_KIND,
      request: {
        request_id: req.requestId ?? randomUUID(),
        protocol: IPC_PROTOCOL,
        operation: IPC_OPERATION,
        http: {
          method: req.method,
          scheme: u.protocol.replace(/:$/, ''),
          authority: u.host,
          path: u.pathname,
          content_encoding: first.get('content-encoding') ?? '',
          query: { raw, normalization: 'rfc3986-sort-keys-values', normalized, sha256: sha256Hex(normalized) },
          headers: { allow_list: allowList, selected },
          audience: req.audience,
          route_id: req.routeId,
          body_sha256: digest,
          nonce,
        },
        ctx: { selected_fields: Object.keys(ctx), values: { ...ctx } },
        key_binding: {
          intent: 'route_policy_minimum',
          requested_key_binding: requested,
          acceptable_key_bindings: [...(req.acceptableKeyBindings ?? [])],
          allow_software_fallback: req.allowSoftwareFallback ?? false,
        },
      },
    },
  };
}

/** One raw exchange: send a line, read the one JSON object back. */
export function brokerExchange(socketPath: string, line: string, timeoutMs = 5000): Promise<IpcResponse> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (msg: string): void => {
      socket.destroy();
      reject(new BrokerClientError(msg));
    };
    const timer = setTimeout(() => fail(`no answer from the broker at ${socketPath} within ${timeoutMs} ms`), timeoutMs);
    socket.on('connect', () => socket.write(`${line}\n`));
    socket.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_IPC_LINE_BYTES) return fail('the broker answer exceeds 1 MiB');
      chunks.push(c);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new BrokerClientError(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? `no broker listening at ${socketPath}` : `broker connection failed: ${err.message}`));
    });
    socket.on('end', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks, size).toString('utf8').replace(/\n$/, '');
      let doc: unknown;
      try {
        doc = parseJsonStrict(text);
      } catch {
        return reject(new BrokerClientError('the broker answer is not JSON'));
      }
      if (!isJsonObject(doc) || typeof doc['accepted'] !== 'boolean' || typeof doc['reason_code'] !== 'string') {
        return reject(new BrokerClientError('the broker answer is not an IPC v1 response'));
      }
      resolve(doc as unknown as IpcResponse);
    });
  });
}

/**
 * Ask the broker for a request-bound passport and return the headers to send with the request.
 * A refusal is returned (not thrown) with the broker's reason code; transport failures throw.
 */
export async function brokerIssue(socketPath: string, req: BrokerIssueRequest): Promise<BrokerIssueResult> {
  const { envelope, nonce, bodySha256: digest } = buildIpcEnvelope(req);
  const response = await brokerExchange(socketPath, JSON.stringify(envelope), req.timeoutMs);
  if (response.request_id !== envelope.request.request_id) throw new BrokerClientError('the broker answered another request_id');
  if (!response.accepted) return { accepted: false, response };
  const a = response.artifacts;
  if (a === null || typeof a.passport?.value !== 'string' || typeof a.stamp?.value !== 'string' || typeof a.stamp?.transcript_sha256 !== 'string') {
    throw new BrokerClientError('the broker accepted but returned no passport/stamp');
  }
  return {
    accepted: true,
    response,
    headers: {
      [HEADER_AUTHORIZATION]: `Bearer ${a.passport.value}`,
      [HEADER_PROOF]: a.stamp.value,
      [HEADER_TRANSCRIPT_SHA256]: a.stamp.transcript_sha256,
      [HEADER_NONCE]: nonce,
      [HEADER_BODY_SHA256]: digest,
      [HEADER_SIGNED_HEADERS]: envelope.request.http.headers.allow_list.join(','),
    },
  };
}
